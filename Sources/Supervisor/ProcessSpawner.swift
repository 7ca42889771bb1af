import ConcurrencySupport
import CSystemShims
import Foundation
import ProcessSupport
#if canImport(Glibc)
import Glibc
#endif

/// A process the supervisor spawned: its pid (also its process group id) and the read ends of
/// its standard output and error pipes.
public struct SpawnedProcess: Sendable {
    public var pid: Int32
    public var stdout: Int32
    public var stderr: Int32
}

/// A program could not be spawned.
public struct SpawnError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable { case executableNotFound, spawnFailed, pipeFailed }
    public var code: Code
    public var message: String
    public var description: String { message }
}

/// Spawns supervised programs with `posix_spawn`, each in a process group of its own, through the
/// `exchanger-exec` trampoline (which sets the parent-death signal, checks the parent and execs).
///
/// Every spawn runs on one dedicated thread that lives as long as the process: Linux sends the
/// parent-death signal when the *thread* that forked the child ends, not the process, so
/// spawning from a pool thread that may later exit would kill healthy workers. ``spawn`` hands
/// the call to that thread and waits for it (well under a millisecond), so a caller keeps its
/// place in its own actor with no suspension point between deciding and spawning.
public final class ProcessSpawner: Sendable {
    private let thread: SpawnThread
    /// The trampoline's path.
    public let trampoline: String
    /// Directories searched first for bare executable names (the supervisor's own directory).
    public let searchDirectories: [String]

    /// - Parameters:
    ///   - trampoline: path of `exchanger-exec`; by default found next to this executable, then on `PATH`.
    public init(trampoline: String? = nil, searchDirectories: [String]? = nil) throws {
        let ownDirectory = Self.ownDirectory()
        let directories = searchDirectories ?? [ownDirectory].compactMap { $0 }
        self.searchDirectories = directories
        guard let path = trampoline ?? Self.resolve("exchanger-exec", in: directories) else {
            throw SpawnError(code: .executableNotFound, message: "exchanger-exec (the spawn trampoline) is neither next to the supervisor nor on PATH")
        }
        self.trampoline = path
        self.thread = SpawnThread()
    }

    /// Finds `name`: a path containing `/` is taken as is (relative to `directory` when given);
    /// a bare name is looked up in the search directories, then on `PATH`.
    public func resolveExecutable(_ name: String, directory: String? = nil) -> String? {
        Self.resolve(name, in: searchDirectories, directory: directory)
    }

    /// Spawns `argv` (argv[0] resolved with ``resolveExecutable(_:directory:)``) with exactly
    /// `environment`, in `directory`, in a new process group, its stdout and stderr on pipes.
    public func spawn(_ argv: [String], environment: [String: String], directory: String?, reaper: ChildReaper) throws -> SpawnedProcess {
        try thread.run { try self.spawnOnThisThread(argv, environment: environment, directory: directory, reaper: reaper) }
    }

    private func spawnOnThisThread(_ argv: [String], environment: [String: String], directory: String?, reaper: ChildReaper) throws -> SpawnedProcess {
        guard let first = argv.first, let executable = resolveExecutable(first, directory: directory) else {
            throw SpawnError(code: .executableNotFound, message: "executable not found: \(argv.first ?? "(empty command)")")
        }
        var out: [Int32] = [-1, -1]
        var err: [Int32] = [-1, -1]
        guard exchanger_pipe_cloexec(&out) == 0 else { throw SpawnError(code: .pipeFailed, message: "pipe: \(String(cString: strerror(errno)))") }
        guard exchanger_pipe_cloexec(&err) == 0 else {
            close(out[0]); close(out[1])
            throw SpawnError(code: .pipeFailed, message: "pipe: \(String(cString: strerror(errno)))")
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, out[1], 1)
        posix_spawn_file_actions_adddup2(&actions, err[1], 2)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var defaults = sigset_t()
        sigfillset(&defaults)
        sigdelset(&defaults, SIGKILL)
        sigdelset(&defaults, SIGSTOP)
        posix_spawnattr_setsigdefault(&attributes, &defaults)

        var trampolineArguments = [trampoline, String(getpid())]
        if let directory { trampolineArguments += ["--chdir", directory] }
        trampolineArguments += ["--", executable]
        trampolineArguments += argv.dropFirst()
        let environmentLines = environment.map { "\($0.key)=\($0.value)" }

        let trampoline = self.trampoline
        let (status, pid) = reaper.spawning({
            var pid: pid_t = 0
            let status = withCStringArray(trampolineArguments) { argvPointer in
                withCStringArray(environmentLines) { envPointer in
                    posix_spawn(&pid, trampoline, &actions, &attributes, argvPointer, envPointer)
                }
            }
            return (status, pid)
        }, pid: { $0.0 == 0 ? $0.1 : -1 })
        close(out[1])
        close(err[1])
        guard status == 0 else {
            close(out[0]); close(err[0])
            throw SpawnError(code: .spawnFailed, message: "cannot start \(executable): \(String(cString: strerror(status)))")
        }
        return SpawnedProcess(pid: pid, stdout: out[0], stderr: err[0])
    }

    static func ownDirectory() -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        let path = String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return (path as NSString).deletingLastPathComponent
    }

    static func resolve(_ name: String, in directories: [String], directory: String? = nil) -> String? {
        if name.contains("/") {
            let path = name.hasPrefix("/") || directory == nil ? name : "\(directory ?? "")/\(name)"
            return access(path, X_OK) == 0 ? path : nil
        }
        let pathDirectories = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":").map(String.init)
        for candidate in directories + pathDirectories where !candidate.isEmpty {
            let path = "\(candidate)/\(name)"
            if access(path, X_OK) == 0 { return path }
        }
        return nil
    }
}

/// One long-lived thread running submitted closures in order; the submitter waits for each.
private final class SpawnThread: @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [() -> Void] = []

    init() {
        let thread = Thread { [condition] in
            nameCurrentThread("spawner")
            while true {
                condition.lock()
                while self.jobs.isEmpty { condition.wait() }
                let job = self.jobs.removeFirst()
                condition.unlock()
                job()
            }
        }
        thread.start()
    }

    func run<T>(_ body: @escaping () throws -> T) throws -> T {
        let done = NSCondition()
        var result: Result<T, any Error>?
        condition.lock()
        jobs.append {
            let outcome = Result { try body() }
            done.lock()
            result = outcome
            done.signal()
            done.unlock()
        }
        condition.signal()
        condition.unlock()
        done.lock()
        while result == nil { done.wait() }
        done.unlock()
        guard let result else { throw SpawnError(code: .spawnFailed, message: "spawn did not complete") }
        return try result.get()
    }
}
