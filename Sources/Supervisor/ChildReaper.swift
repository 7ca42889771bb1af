import ConcurrencySupport
import CSystemShims
import Foundation
import ProcessSupport
#if canImport(Glibc)
import Glibc
#endif

/// Reaps every child of the process: the supervisor's own workers, and, because the supervisor
/// is a child subreaper, every orphaned descendant re-parented to it. So it can be PID 1.
///
/// On SIGCHLD (and on a periodic backstop, since signals coalesce) it peeks at exited children
/// with `waitid(WNOWAIT)`; for a process-group leader the supervisor spawned it first SIGKILLs the
/// rest of that group (stragglers a worker left behind) while the leader's zombie still holds the
/// group id, so the id cannot have been reused; then it reaps. Exits of known leaders are
/// delivered on ``exits``; unknown descendants are just reaped and counted.
public final class ChildReaper: Sendable {
    /// One exited supervised process.
    public struct Exit: Sendable {
        public var pid: Int32
        /// The exit code, or 128 + the signal that ended it.
        public var status: Int32
    }

    private let leaders = LockedBox<Set<Int32>>([])
    /// Held across a spawn and its registration, and across a reap pass, so an exit is never
    /// seen before its process is known.
    private let spawnLock = NSLock()
    private let continuation: AsyncStream<Exit>.Continuation
    /// Exits of processes registered with ``track(_:)``.
    public let exits: AsyncStream<Exit>

    public init() {
        (exits, continuation) = AsyncStream.makeStream(of: Exit.self, bufferingPolicy: .unbounded)
    }

    /// Makes this process a child subreaper (`PR_SET_CHILD_SUBREAPER`). Returns false when the
    /// kernel refused (the supervisor still reaps its own children).
    @discardableResult
    public static func becomeSubreaper() -> Bool {
        exchanger_set_child_subreaper() == 0
    }

    /// Runs `spawn` (which returns the new process's pid) and registers the pid as a
    /// process-group leader before any reap pass can see it exit.
    public func spawning<T>(_ spawn: () throws -> T, pid: (T) -> Int32) rethrows -> T {
        spawnLock.lock()
        defer { spawnLock.unlock() }
        let result = try spawn()
        let leader = pid(result)
        if leader > 0 { leaders.withLock { _ = $0.insert(leader) } }
        return result
    }

    /// Reaps everything that has exited; returns how many.
    @discardableResult
    public func reap() -> Int {
        spawnLock.lock()
        defer { spawnLock.unlock() }
        var count = 0
        while true {
            var info = siginfo_t()
            let result = waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT)
            if result < 0 {
                if errno == EINTR { continue }
                break  // ECHILD: no children at all
            }
            let pid = info._sifields._sigchld.si_pid
            guard pid > 0 else { break }  // children exist, none has exited
            let isLeader = leaders.withLock { $0.contains(pid) }
            if isLeader { _ = kill(-pid, SIGKILL) }
            var raw: Int32 = 0
            var reaped: pid_t
            repeat { reaped = waitpid(pid, &raw, 0) } while reaped < 0 && errno == EINTR
            guard reaped == pid else { continue }
            count += 1
            // An orphaned descendant (not spawned by the supervisor) is only reaped.
            if isLeader {
                leaders.withLock { _ = $0.remove(pid) }
                continuation.yield(Exit(pid: pid, status: Self.decode(raw)))
            }
        }
        return count
    }

    /// Reaps on every SIGCHLD and at least every `interval`, until the task is cancelled.
    /// `ProcessSignals.install` must include SIGCHLD.
    public func run(interval: Duration = .seconds(1)) async {
        let signals = ProcessSignals.events()
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await signal in signals where signal == SIGCHLD { self.reap() }
            }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    self.reap()
                }
            }
            await group.next()
            group.cancelAll()
        }
    }

    /// Stops delivering exits.
    public func finish() { continuation.finish() }

    static func decode(_ status: Int32) -> Int32 {
        let signal = status & 0x7f
        if signal == 0 { return (status >> 8) & 0xff }
        return 128 + signal
    }
}
