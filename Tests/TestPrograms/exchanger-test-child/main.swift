// A small program the supervisor tests run in place of a worker. Modes (first argument):
//
//   sleep                     print a JSON "ready" line, then sleep until SIGTERM (exit 0)
//   exit CODE [SECONDS]       print "ready", wait SECONDS (default 0), exit with CODE
//   ignore-term               print "ready", ignore SIGTERM, sleep forever (needs SIGKILL)
//   grandchild                spawn `exchanger-test-child ignore-term` in this process group, print its
//                             pid as {"grandchild": PID}, then sleep until SIGTERM
//   partial BYTES             write BYTES bytes without a newline, then sleep until SIGTERM
//   lines N                   print N JSON lines and one plain line, then exit 0
//
// Every mode first writes "PID PPID PGID" to the file named by EXCHANGER_TEST_PID_FILE, when set,
// appending one line per start, so a test can count starts and find the processes.
import Foundation
import ProcessSupport
#if canImport(Glibc)
import Glibc
#endif

/// Writes one line to standard output, unbuffered.
func say(_ line: String) {
    let text = line + "\n"
    _ = text.withCString { write(STDOUT_FILENO, $0, strlen($0)) }
}

let arguments = Array(CommandLine.arguments.dropFirst())
let mode = arguments.first ?? "sleep"

if let pidFile = ProcessInfo.processInfo.environment["EXCHANGER_TEST_PID_FILE"] {
    let line = "\(getpid()) \(getppid()) \(getpgrp())\n"
    let fd = open(pidFile, O_WRONLY | O_APPEND | O_CREAT, 0o644)
    if fd >= 0 {
        _ = line.withCString { write(fd, $0, strlen($0)) }
        close(fd)
    }
}

func ready() {
    say(#"{"level":"info","msg":"ready","mode":"\#(mode)"}"#)
}

func sleepUntilTerminated(ignoringTerm: Bool = false) -> Never {
    if ignoringTerm {
        signal(SIGTERM, SIG_IGN)
    } else {
        signal(SIGTERM) { _ in _exit(0) }
    }
    while true { pause() }
}

switch mode {
case "sleep":
    ready()
    sleepUntilTerminated()
case "exit":
    let code = arguments.count > 1 ? Int32(arguments[1]) ?? 1 : 1
    let seconds = arguments.count > 2 ? Double(arguments[2]) ?? 0 : 0
    ready()
    if seconds > 0 { usleep(UInt32(seconds * 1_000_000)) }
    exit(code)
case "ignore-term":
    signal(SIGTERM, SIG_IGN)
    ready()
    sleepUntilTerminated(ignoringTerm: true)
case "grandchild":
    do {
        let child = try ChildProcess(
            executable: CommandLine.arguments[0], arguments: ["ignore-term"],
            stdout: .discard, stderr: .discard, newProcessGroup: false
        )
        say(#"{"level":"info","msg":"ready","mode":"grandchild","grandchild":\#(child.pid)}"#)
    } catch {
        say("cannot spawn the grandchild: \(error)")
        exit(3)
    }
    sleepUntilTerminated()
case "partial":
    let count = arguments.count > 1 ? Int(arguments[1]) ?? 100 : 100
    let bytes = [UInt8](repeating: UInt8(ascii: "x"), count: count)
    _ = bytes.withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
    sleepUntilTerminated()
case "lines":
    let count = arguments.count > 1 ? Int(arguments[1]) ?? 10 : 10
    for index in 0..<count {
        say(#"{"level":"info","msg":"line","n":\#(index),"jobId":"job-1"}"#)
    }
    say("plain text line")
    exit(0)
default:
    FileHandle.standardError.write(Data("unknown mode \(mode)\n".utf8))
    exit(2)
}
