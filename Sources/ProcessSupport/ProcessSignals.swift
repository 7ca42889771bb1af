import ConcurrencySupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Write end of the self-pipe; written only by the signal handler, set once before it is installed.
nonisolated(unsafe) private var signalPipeWriteEnd: Int32 = -1

/// Turns signals into async events without running Swift code in a signal handler.
///
/// ``install(_:)`` sets a `sigaction` handler that only writes the signal number to a pipe (the
/// self-pipe trick: `write` is async-signal-safe); a dedicated thread reads the pipe and passes the
/// signals on. While some code listens through ``events()``, signals go to it; otherwise SIGTERM
/// and SIGINT end the process with the conventional status 128 + signal, and the others are ignored.
public enum ProcessSignals {
    private final class Subscribers: @unchecked Sendable {
        let lock = NSLock()
        var continuations: [UInt64: AsyncStream<Int32>.Continuation] = [:]
        var next: UInt64 = 0
        var installed = false
    }

    private static let subscribers = Subscribers()

    /// Installs the handler for `signals` and starts the thread that passes them on. Idempotent.
    public static func install(_ signals: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGUSR2]) {
        subscribers.lock.lock()
        defer { subscribers.lock.unlock() }
        guard !subscribers.installed else { return }
        subscribers.installed = true
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK)
        signalPipeWriteEnd = fds[1]
        let readEnd = fds[0]
        for signal in signals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { received in
                var byte = UInt8(truncatingIfNeeded: received)
                _ = write(signalPipeWriteEnd, &byte, 1)
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(signal, &action, nil)
        }
        let thread = Thread {
            nameCurrentThread("signals")
            var byte: UInt8 = 0
            while true {
                let count = read(readEnd, &byte, 1)
                if count == 1 { deliver(Int32(byte)) } else if count < 0 && errno == EINTR { continue } else if count <= 0 { return }
            }
        }
        thread.start()
    }

    /// Signals from now on, until the stream is dropped.
    public static func events() -> AsyncStream<Int32> {
        AsyncStream { continuation in
            subscribers.lock.lock()
            subscribers.next &+= 1
            let id = subscribers.next
            subscribers.continuations[id] = continuation
            subscribers.lock.unlock()
            continuation.onTermination = { _ in
                subscribers.lock.lock()
                subscribers.continuations.removeValue(forKey: id)
                subscribers.lock.unlock()
            }
        }
    }

    private static func deliver(_ signal: Int32) {
        subscribers.lock.lock()
        let listeners = Array(subscribers.continuations.values)
        subscribers.lock.unlock()
        if listeners.isEmpty {
            if signal == SIGTERM || signal == SIGINT { exit(128 + signal) }
            return
        }
        for listener in listeners { listener.yield(signal) }
    }
}
