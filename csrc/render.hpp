// Ground-truth rendering: keypoints -> Gaussian heatmaps and unit-vector PAFs (docs/decoder.md).
#pragma once
#include "view.hpp"
