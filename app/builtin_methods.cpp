#include "app/builtin_methods.h"

#include "models/auto_jacobin/method.h"
#include "models/baselines/method.h"
#include "models/deepquan/method.h"
#include "models/hashnet/method.h"
#include "models/sigah/method.h"
#include "models/wsl/method.h"
#include "trainers/method.h"

namespace hashlab {

void register_builtin_methods() {
  static const bool done = [] {
    MethodRegistry& r = method_registry();
    register_baselines(r);  // lsh, pcah, itq, sh
    register_hashnet(r);
    register_deepquan(r);  // deepquan, dae_pq, pq
    register_wsl(r);      // wsl, wsl_mlp
    register_sigah(r);
    register_auto_jacobin(r);  // auto_jacobin (+ the AutoBin variants as configs)
    return true;
  }();
  (void)done;
}

}  // namespace hashlab
