// Row-norm kernels instantiated for x of type float (one file per dtype: parallel builds).
#include "row_norm.cuh"

namespace normswitch {

cudaError_t launch_row_norm_f32(const RowNormParams& p, const RowNormPlan& plan,
                               cudaStream_t stream) {
  return rows::launch_typed<float>(p, plan, stream);
}

}  // namespace normswitch
