#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "csrc/core/error.h"
#include "csrc/core/registry.h"

using namespace hashlab;

namespace {
struct Thing {
  int v;
};
using Things = Registry<Thing, int>;
}  // namespace

// A name registered twice is refused (the later entry used to win silently);
// an unknown name is refused with the known ones and a suggestion.
TEST(Registry, RefusesADuplicateNameAndNamesTheKnownOnes) {
  Things r("thing");
  r.add("alpha", [](int v) { return std::make_unique<Thing>(Thing{v}); });
  try {
    r.add("alpha", [](int v) { return std::make_unique<Thing>(Thing{-v}); });
    ADD_FAILURE() << "a duplicate name was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "thing registry: 'alpha' is registered twice");
  }
  EXPECT_EQ(r.create("alpha", "here", 3)->v, 3);  // the first entry stays
  try {
    r.create("alpah", "cfg.yaml:2:3: kind", 1);
    ADD_FAILURE() << "an unknown name was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "cfg.yaml:2:3: kind: unknown thing 'alpah' (known: alpha) (did you mean 'alpha'?)");
  }
}
