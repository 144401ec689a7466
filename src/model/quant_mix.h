/*
 * Per-tensor types of a quantized model: the mixture llama.cpp's quantizer
 * (llama-quantize, without an importance matrix) produces for each file type,
 * so that a model quantized by hypura (synth --type) has the same tensor
 * types as the same model quantized by llama.cpp.
 *
 * The rule, for the file types hypura writes (F = the file type's base type):
 *   - tensors that are not 2-D or more weight matrices stay F32: norms,
 *     biases, and the expert router ffn_gate_inp (and ffn_gate_inp_shexp);
 *   - F32/F16/BF16 files: every matrix has the base type;
 *   - output.weight (token_embd.weight when the head is tied): Q6_K, except
 *     Q8_0 files keep Q8_0;
 *   - attn_v.weight of layer i (of n):
 *       Q2_K:             Q4_K if n_head / n_head_kv >= 4, else Q3_K;
 *       Q3_K_M:           Q5_K for i < 2, else Q4_K;
 *       Q4_K_M, Q5_K_M:   Q6_K when more_bits(i, n), else F;
 *       then in a 70B llama (80 layers): Q3_K or Q4_K become Q5_K;
 *       then with exactly 8 experts (Mixtral): Q8_0;
 *   - attn_k.weight: Q8_0 with exactly 8 experts, else F;
 *   - attn_output.weight: with exactly 8 experts, Q5_K for Q2_K, Q3_K_M and
 *     Q4_K_M files; otherwise Q3_K for Q2_K files, Q4_K for Q3_K_M files;
 *     else F;
 *   - ffn_down* of layer i (dense, experts and shared expert alike; i is the
 *     block index): Q2_K: Q3_K; Q3_K_M: Q5_K for i < n/16, else Q4_K;
 *     Q4_K_M and Q5_K_M: Q6_K when more_bits(i, n); else F;
 *   - everything else: F.
 *   more_bits(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2 (integer
 *   division), the layers that get more bits.
 *   Finally, a K-quant on a tensor whose rows are not a multiple of 256 falls
 *   back as llama.cpp's does: Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0; Q2_K and
 *   Q3_K would fall back to IQ4_NL, which hypura does not write: an error.
 */
#ifndef HY_MODEL_QUANT_MIX_H
#define HY_MODEL_QUANT_MIX_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base.h"

/* The file types hypura can write; values are GGUF general.file_type. */
enum quant_mix_ftype {
    QUANT_MIX_F32 = 0,
    QUANT_MIX_F16 = 1,
    QUANT_MIX_Q4_0 = 2,
    QUANT_MIX_Q4_1 = 3,
    QUANT_MIX_Q8_0 = 7,
    QUANT_MIX_Q5_0 = 8,
    QUANT_MIX_Q5_1 = 9,
    QUANT_MIX_Q2_K = 10,
    QUANT_MIX_Q3_K_M = 12,
    QUANT_MIX_Q4_K_M = 15,
    QUANT_MIX_Q5_K_M = 17,
    QUANT_MIX_Q6_K = 18,
    QUANT_MIX_BF16 = 32,
};

/* File type by name ("q4_k_m", "F16"; case-insensitive); false when unknown. */
bool quant_mix_ftype_from_name(const char *name, enum quant_mix_ftype *out);
/* Comma-separated list of the names, for messages and --help. */
const char *quant_mix_ftype_names(void);
/* enum hy_type of the file type's base (F). */
uint32_t quant_mix_base_type(enum quant_mix_ftype ftype);

/* What the rule needs to know about the model. */
struct quant_mix_model {
    int64_t n_layer;
    int64_t n_head, n_head_kv;
    int64_t n_expert;
    bool is_70b; /* llama with 80 layers */
    bool tied_output; /* no output.weight: token_embd is the head */
};

/* Type of one tensor. n_dims and ne0 are the tensor's; name its GGUF name.
 * HY_ERR_UNSUPPORTED naming the tensor when the fallback would need a type
 * hypura cannot write. */
HY_MUST_CHECK enum hy_status quant_mix_tensor_type(const struct quant_mix_model *m,
                                                   enum quant_mix_ftype ftype, const char *name,
                                                   uint32_t n_dims, int64_t ne0, uint32_t *out);

#endif
