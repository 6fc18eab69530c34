#include "testing/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

extern char** environ;

namespace fairway::testing {

ChildProcess::ChildProcess(const std::string& program, const std::vector<std::string>& args,
                           const ChildProcessOptions& options) {
  std::vector<std::string> storage = {program};
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  // The child's environment, built before fork (setenv is not safe between fork and exec).
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
  for (const auto& [n, v] : options.env) {
    std::erase_if(env_storage, [&](const std::string& e) { return e.starts_with(n + "="); });
    env_storage.push_back(n + "=" + v);
  }
  std::vector<char*> envp;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  int err_fd = -1;
  if (!options.stderr_path.empty()) {
    err_fd = open(options.stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (err_fd < 0) {
      error_ = "cannot open " + options.stderr_path;
      return;
    }
  }
  // in: test -> child's stdin; out: child's stdout -> test. Close-on-exec, so that no other
  // child started later keeps these ends open.
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0) {
    if (err_fd >= 0) close(err_fd);
    error_ = "pipe failed";
    return;
  }
  if (pipe2(out, O_CLOEXEC) != 0) {
    if (err_fd >= 0) close(err_fd);
    close(in[0]);
    close(in[1]);
    error_ = "pipe failed";
    return;
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    if (options.die_with_test) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(126);
    }
    dup2(in[0], STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    if (err_fd >= 0) dup2(err_fd, STDERR_FILENO);
    close(in[0]);
    close(in[1]);
    close(out[0]);
    close(out[1]);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  if (err_fd >= 0) close(err_fd);
  close(in[0]);
  close(out[1]);
  if (pid < 0) {
    close(in[1]);
    close(out[0]);
    error_ = "fork failed";
    return;
  }
  pid_ = pid;
  started_ = true;
  to_child_ = fdopen(in[1], "w");
  from_child_ = fdopen(out[0], "r");
}

ChildProcess::~ChildProcess() {
  Kill(SIGKILL);
  if (to_child_ != nullptr) fclose(to_child_);
  CloseStdout();
}

void ChildProcess::Kill(int sig) {
  if (pid_ <= 0) return;
  kill(pid_, sig);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

void ChildProcess::Signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

bool ChildProcess::Terminate(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return true;
  kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      Kill(SIGKILL);
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // no exit notification
  }
  pid_ = -1;
  return true;
}

bool ChildProcess::Alive() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == 0) return true;
  pid_ = -1;
  return false;
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
