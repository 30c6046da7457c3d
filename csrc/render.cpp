#include "render.hpp"
