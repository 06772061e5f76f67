// Entry point of a layer check executable (cmake/FracsweepLayer.cmake): linking it proves the
// layer's objects resolve against its declared dependencies alone; running it proves nothing
// more, so it only reports success.
#include <cstdio>

int main() {
  std::puts("layer links alone");
  return 0;
}
