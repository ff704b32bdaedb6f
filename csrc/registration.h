// What csrc/registration.cpp knows about the ops besides their schemas.
#pragma once

#include <string_view>

namespace bigmodel::binding {

// Whether `name` (without the "bigmodel::" prefix) has a CPU kernel only, by design.
bool is_cpu_only_op(std::string_view name);

}  // namespace bigmodel::binding
