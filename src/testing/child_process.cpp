#include "testing/child_process.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fairway::testing {

ChildProcess::ChildProcess(const std::string& program, const std::vector<std::string>& args) {
  std::vector<std::string> storage = {program};
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  int in[2], out[2];  // in: test -> child's stdin; out: child's stdout -> test
  if (pipe(in) != 0) {
    error_ = "pipe failed";
    return;
  }
  if (pipe(out) != 0) {
    close(in[0]);
    close(in[1]);
    error_ = "pipe failed";
    return;
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);
    dup2(in[0], STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    close(in[0]);
    close(in[1]);
    close(out[0]);
    close(out[1]);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  if (pid < 0) {
    close(in[1]);
    close(out[0]);
    error_ = "fork failed";
    return;
  }
  pid_ = pid;
  to_child_ = fdopen(in[1], "w");
  from_child_ = fdopen(out[0], "r");
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  if (to_child_ != nullptr) fclose(to_child_);
  CloseStdout();
}

bool ChildProcess::ReadLine(std::string* line) {
  line->clear();
  if (from_child_ == nullptr) return false;
  int c;
  while ((c = fgetc(from_child_)) != EOF && c != '\n') line->push_back(static_cast<char>(c));
  return c != EOF || !line->empty();
}

bool ChildProcess::WriteLine(const std::string& line) {
  if (to_child_ == nullptr) return false;
  return fprintf(to_child_, "%s\n", line.c_str()) >= 0 && fflush(to_child_) == 0;
}

void ChildProcess::CloseStdout() {
  if (from_child_ != nullptr) fclose(from_child_);
  from_child_ = nullptr;
}

}  // namespace fairway::testing
