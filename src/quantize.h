/* Model quantization (quantize.c): the plans and sp_quantize_file, declared in the developer
 * interface (include/specprefill_dev.h) for `quantize`, `make-model` and `convert`. */
#ifndef SP_QUANTIZE_H
#define SP_QUANTIZE_H

#include "specprefill_dev.h"

#endif
