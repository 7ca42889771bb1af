import ConcurrencySupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A child process started with `posix_spawn`, its standard output captured through a pipe.
///
/// Foundation's `Process` leaks zombies and signal masks on Linux; this spawns with a clean
/// signal mask and default dispositions, optionally in its own process group.
public final class ChildProcess: @unchecked Sendable {
    /// The child's process id.
    public let pid: pid_t
    private let stdoutFD: Int32?
    private let lock = NSLock()
    private var exitStatus: Int32?

    /// Where the child's standard output goes.
    public enum Output: Sendable {
        case inherit, pipe, discard
        /// Into a file, created (mode 0600) or truncated.
        case file(String)
    }

    /// Spawns `executable` with `arguments` (not including argv[0]).
    /// - Parameters:
    ///   - environment: extra variables merged over this process's environment.
    ///   - stdout: `.pipe` to read the output with ``readLines()`` / ``readAll()``.
    ///   - newProcessGroup: put the child in a process group of its own.
    public init(
        executable: String, arguments: [String], environment: [String: String] = [:],
        stdout: Output = .pipe, stderr: Output = .inherit, newProcessGroup: Bool = true
    ) throws {
        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }

        var readEnd: Int32?
        var pipeWriteEnd: Int32 = -1
        switch stdout {
        case .pipe:
            var fds: [Int32] = [-1, -1]
            guard pipe(&fds) == 0 else { throw ChildProcessError(message: "pipe: \(String(cString: strerror(errno)))") }
            // Neither end may leak into other children spawned concurrently.
            _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
            readEnd = fds[0]
            pipeWriteEnd = fds[1]
            posix_spawn_file_actions_adddup2(&fileActions, fds[1], 1)
        case .discard:
            posix_spawn_file_actions_addopen(&fileActions, 1, "/dev/null", O_WRONLY, 0)
        case .file(let path):
            posix_spawn_file_actions_addopen(&fileActions, 1, path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        case .inherit:
            break
        }
        switch stderr {
        case .discard: posix_spawn_file_actions_addopen(&fileActions, 2, "/dev/null", O_WRONLY, 0)
        case .file(let path): posix_spawn_file_actions_addopen(&fileActions, 2, path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        case .inherit, .pipe: break
        }

        var flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if newProcessGroup {
            flags |= Int32(POSIX_SPAWN_SETPGROUP)
            posix_spawnattr_setpgroup(&attributes, 0)
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var defaults = sigset_t()
        sigfillset(&defaults)
        sigdelset(&defaults, SIGKILL)
        sigdelset(&defaults, SIGSTOP)
        posix_spawnattr_setsigdefault(&attributes, &defaults)

        var merged = ProcessInfo.processInfo.environment
        for (key, value) in environment { merged[key] = value }
        let argv = [executable] + arguments
        let envp = merged.map { "\($0.key)=\($0.value)" }

        var childPID: pid_t = 0
        let status = withCStringArray(argv) { argvPointer in
            withCStringArray(envp) { envPointer in
                posix_spawn(&childPID, executable, &fileActions, &attributes, argvPointer, envPointer)
            }
        }
        if pipeWriteEnd >= 0 { close(pipeWriteEnd) }
        guard status == 0 else {
            if let readEnd { close(readEnd) }
            throw ChildProcessError(message: "cannot start \(executable): \(String(cString: strerror(status)))", code: status)
        }
        self.pid = childPID
        self.stdoutFD = readEnd
    }

    deinit {
        if let stdoutFD { close(stdoutFD) }
    }

    /// Sends a signal to the child (or to its whole process group).
    public func signal(_ signal: Int32, group: Bool = false) {
        _ = kill(group ? -pid : pid, signal)
    }

    /// Waits for the child to exit and returns its wait status decoded: the exit code, or
    /// 128 + signal number when a signal ended it.
    @discardableResult
    public func wait() async throws -> Int32 {
        if let status = lock.withLock({ exitStatus }) { return status }
        let pid = self.pid
        let status = try await runBlocking(name: "waitpid") {
            var raw: Int32 = 0
            while waitpid(pid, &raw, 0) < 0 {
                guard errno == EINTR else { throw ChildProcessError(message: "waitpid: \(String(cString: strerror(errno)))") }
            }
            return raw
        }
        let decoded = Self.decode(status)
        lock.withLock { exitStatus = decoded }
        return decoded
    }

    /// Reads the child's standard output to end of file.
    public func readAll() async throws -> String {
        guard let fd = stdoutFD else { return "" }
        let bytes: [UInt8] = try await runBlocking(name: "child-stdout") {
            var collected: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count > 0 { collected.append(contentsOf: buffer[0..<count]) } else if count == 0 { break } else if errno != EINTR {
                    throw ChildProcessError(message: "read: \(String(cString: strerror(errno)))")
                }
            }
            return collected
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The child's standard output, line by line, as it arrives.
    public func lines() -> AsyncThrowingStream<String, any Error> {
        guard let fd = stdoutFD else { return AsyncThrowingStream { $0.finish() } }
        return AsyncThrowingStream { continuation in
            let thread = Thread {
                nameCurrentThread("child-stdout")
                var pending: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 65536)
                while true {
                    let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if count < 0 && errno == EINTR { continue }
                    if count <= 0 { break }
                    pending.append(contentsOf: buffer[0..<count])
                    while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                        continuation.yield(String(decoding: pending[..<newline], as: UTF8.self))
                        pending.removeSubrange(...newline)
                    }
                }
                if !pending.isEmpty { continuation.yield(String(decoding: pending, as: UTF8.self)) }
                continuation.finish()
            }
            thread.start()
        }
    }

    private static func decode(_ status: Int32) -> Int32 {
        let signal = status & 0x7f
        if signal == 0 { return (status >> 8) & 0xff }
        return 128 + signal
    }
}

/// A child process could not be started or waited for.
public struct ChildProcessError: Error, CustomStringConvertible, Sendable {
    public var message: String
    /// The `errno` of a failed start (`posix_spawn`), when that is what failed.
    public var code: Int32?
    public var description: String { message }

    public init(message: String, code: Int32? = nil) {
        self.message = message
        self.code = code
    }
}

/// Runs `body` with a NULL-terminated `char *[]` holding copies of `strings` (an argv or envp for
/// `posix_spawn`); the copies are freed afterwards.
public func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    let pointers = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: strings.count + 1)
    for (index, string) in strings.enumerated() { (pointers + index).initialize(to: strdup(string)) }
    (pointers + strings.count).initialize(to: nil)
    defer {
        for index in 0..<strings.count { free(pointers[index]) }
        pointers.deallocate()
    }
    return body(pointers)
}
