// The operators a TorchScript file's code can run: every node of every function and method in
// the file's compilation unit (forward, the submodules' methods, __setstate__, helper functions),
// nested blocks (if, loop) included. tch exposes no graph, so the file is loaded here once more
// and only read; src/runtime/torchscript_ops.rs compares the names with the allowlist.
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/serialization/import.h>
#include <torch/script.h>

#include <cstdlib>
#include <cstring>
#include <set>
#include <sstream>
#include <string>

namespace {
void walk(torch::jit::Block* block, std::set<std::string>& ops) {
  for (torch::jit::Node* node : block->nodes()) {
    ops.insert(node->kind().toQualString());
    for (torch::jit::Block* inner : node->blocks()) walk(inner, ops);
  }
}

char* copy(const std::string& text) {
  char* out = static_cast<char*>(std::malloc(text.size() + 1));
  if (out != nullptr) std::memcpy(out, text.c_str(), text.size() + 1);
  return out;
}
}  // namespace

// The operator names, one per line; or nullptr with `*error` set. Free both with food_api_free.
extern "C" char* food_api_torchscript_ops(const char* data, size_t len, char** error) {
  try {
    std::istringstream in(std::string(data, len));
    torch::jit::Module module = torch::jit::load(in, c10::Device(c10::kCPU));
    std::set<std::string> ops;
    for (torch::jit::Function* function : module.type()->compilation_unit()->get_functions()) {
      if (function->isGraphFunction()) walk(torch::jit::toGraphFunction(*function).graph()->block(), ops);
    }
    std::string names;
    for (const std::string& op : ops) names += op + "\n";
    return copy(names);
  } catch (const std::exception& e) {
    *error = copy(e.what());
  } catch (...) {
    *error = copy("unknown error");
  }
  return nullptr;
}

extern "C" void food_api_free(char* text) { std::free(text); }
