#pragma once
// Where a run may write: never over one of its own inputs. A results file, journal or lock
// that resolves to the same file (device and inode: hard links, symlinks and `..` included) as
// a model, tokenizer, evaluation file or the job file is refused, even with --force, so no
// command line can destroy an input.
#include <string>
#include <vector>

namespace fracsweep {

// Throws InputError when the directory of `outputs.front()` (the results file) does not exist,
// or when any of `outputs` that exists is one of `inputs`. A directory among `inputs` stands for
// the files directly inside it (a Hugging Face model directory).
void check_outputs_spare_inputs(const std::vector<std::string>& outputs,
                                const std::vector<std::string>& inputs);

}  // namespace fracsweep
