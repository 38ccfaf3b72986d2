// oneDNN Graph ("LLGA") fusion for the TorchScript image model: what Python's
// torch.jit.enable_onednn_fusion(True) turns on, which tch does not expose. libtorch runs every
// registered pre-pass when its profiling executor optimizes a graph for the input shapes it has
// seen; this pass fuses only on a thread that asked for it around the image model's forward pass.
// The sentence encoder meets a new shape with every text length, and each would be fused and
// compiled anew (slower, measured in BENCHMARKS.md), so it keeps libtorch's default.
#include <torch/csrc/jit/codegen/onednn/interface.h>
#include <torch/csrc/jit/passes/pass_manager.h>

#include <atomic>
#include <cstdint>

namespace {
thread_local bool fuse_here = false;
std::atomic<uint64_t> fused_graphs{0};
}  // namespace

// Registers the pass once per process; later calls do nothing.
extern "C" void food_api_onednn_fusion_register() {
  static const bool registered = [] {
    torch::jit::registerPrePass([](std::shared_ptr<torch::jit::Graph>& graph) {
      if (fuse_here) {
        torch::jit::fuser::onednn::fuseGraph(graph);
        fused_graphs.fetch_add(1, std::memory_order_relaxed);
      }
    });
    return true;
  }();
  (void)registered;
}

// Whether graphs optimized on the calling thread from now on are fused.
extern "C" void food_api_onednn_fusion_here(bool on) { fuse_here = on; }

// Graphs the pass has fused so far: /system_status shows it, so that "on" can be checked.
extern "C" uint64_t food_api_onednn_fused_graphs() { return fused_graphs.load(std::memory_order_relaxed); }
