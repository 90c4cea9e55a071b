// The built-in methods: one line each.
#include "trainers/baselines.h"
#include "trainers/deepquan.h"
#include "trainers/hashnet.h"
#include "trainers/method.h"

namespace hashlab {

void register_builtin_methods() {
  static const bool done = [] {
    MethodRegistry& r = method_registry();
    register_baselines(r);  // lsh, pcah, itq, sh
    register_hashnet(r);
    register_deepquan(r);  // deepquan, dae_pq, pq
    return true;
  }();
  (void)done;
}

}  // namespace hashlab
