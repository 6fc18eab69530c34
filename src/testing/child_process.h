#pragma once
// ChildProcess: a helper program run by a test (a peer server, the mock Kafka cluster), with a
// pipe to its stdin and one from its stdout. It dies with the test process (PR_SET_PDEATHSIG), so
// a crashed test leaves nothing behind, and the destructor kills (SIGKILL) and reaps it.

#include <sys/types.h>

#include <cstdio>
#include <string>
#include <vector>

namespace fairway::testing {

class ChildProcess {
 public:
  // Starts `program` with `args` (argv[0] is `program`). Check started() / error() afterwards.
  ChildProcess(const std::string& program, const std::vector<std::string>& args);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  bool started() const { return pid_ > 0; }
  const std::string& error() const { return error_; }

  // Reads one line of the child's stdout, without its newline; false at end of file (the child
  // exited or closed its stdout).
  bool ReadLine(std::string* line);
  // Writes `line` and a newline to the child's stdin; false if the child is gone.
  bool WriteLine(const std::string& line);
  // Stops reading the child's stdout (for a child that prints nothing more: its later writes
  // fail with EPIPE instead of blocking).
  void CloseStdout();

 private:
  pid_t pid_ = -1;
  FILE* to_child_ = nullptr;
  FILE* from_child_ = nullptr;
  std::string error_;
};

}  // namespace fairway::testing
