/*
 * The order and arithmetic in which one token's routed experts' shares are
 * added to its output, shared by the kernels that add them (the combine
 * kernel in cuda_ops.cu, the products' CUQ_EP_MOE epilogue in cuda_quant.cu),
 * so that both give the sums a host-routed token gets (forward.c adds its
 * experts in ascending order of their ids, each as add_rows adds a row).
 */
#ifndef HY_BACKEND_CUDA_CUDA_MOE_CUH
#define HY_BACKEND_CUDA_CUDA_MOE_CUH

/* Whether slot a (expert e_a) is added before slot b (expert e_b):
 * ascending expert ids, slots of one expert by their index. */
__device__ __forceinline__ bool moe_slot_before(int e_a, int a, int e_b, int b)
{
    return e_a < e_b || (e_a == e_b && a < b);
}

/* v plus a share x with its factor alpha, as a row is added (a factor of 1
 * adds x itself). */
__device__ __forceinline__ float moe_share_add(float v, float alpha, float x)
{
    return alpha == 1.0f ? v + x : v + alpha * x;
}

/* The shared expert's factor: the sigmoid of its gate logit. */
__device__ __forceinline__ float moe_shared_factor(float logit)
{
    return 1.0f / (1.0f + expf(-logit));
}

#endif
