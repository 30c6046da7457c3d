// Plain C++ tests of edgepose_core (no framework needed); run by ctest, also under ASan/UBSan.
#include <cstdio>
int main() {
  std::printf("edgepose_tests: 0 checks\n");
  return 0;
}
