// The methods hashlab ships: each folder under models/ that holds a method
// has a register function, and register_builtin_methods() calls each once.
#pragma once

namespace hashlab {

// One line per method folder (app/builtin_methods.cpp); idempotent.
void register_builtin_methods();

}  // namespace hashlab
