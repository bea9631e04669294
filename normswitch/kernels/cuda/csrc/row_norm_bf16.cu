// Row-norm kernels instantiated for x of type __nv_bfloat16 (one file per dtype: parallel builds).
#include "row_norm.cuh"

namespace normswitch {

cudaError_t launch_row_norm_bf16(const RowNormParams& p, const RowNormPlan& plan,
                               cudaStream_t stream) {
  return rows::launch_typed<__nv_bfloat16>(p, plan, stream);
}

}  // namespace normswitch
