// Row-norm kernels instantiated for x of type __half (one file per dtype: parallel builds).
#include "row_norm.cuh"

namespace normswitch {

cudaError_t launch_row_norm_f16(const RowNormParams& p, const RowNormPlan& plan,
                               cudaStream_t stream) {
  return rows::launch_typed<__half>(p, plan, stream);
}

}  // namespace normswitch
