// paf: see docs/decoder.md (being written)
#include "view.hpp"
