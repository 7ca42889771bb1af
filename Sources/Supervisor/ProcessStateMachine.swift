/// The life of one supervised process slot (a program instance, global or of one deployment), as
/// a plain value: events go in, the actions the driver must perform come out. No I/O, no clock:
/// the caller passes `now` and a random number for the jitter, so every rule is tested directly.
///
/// States follow supervisord's: STOPPED → STARTING → RUNNING; an exit goes to BACKOFF (restart
/// later) or EXITED (not restarted); a stop request goes through STOPPING. A slot whose process
/// keeps dying is reported FAILED (crash loop) and keeps being restarted at the backoff cap.
public struct ProcessStateMachine: Sendable {
    /// Where the slot is.
    public enum State: Sendable, Equatable {
        /// Not running and not meant to (never started, or stopped on request).
        case stopped
        /// Spawned at `since`; it counts as started once it has lived `startsecs`.
        case starting(pid: Int32, since: ContinuousClock.Instant)
        /// Alive past `startsecs`.
        case running(pid: Int32, since: ContinuousClock.Instant)
        /// Waiting to be restarted at `until`.
        case backoff(until: ContinuousClock.Instant)
        /// The stop signal was sent; SIGKILL follows at `deadline`.
        case stopping(pid: Int32, deadline: ContinuousClock.Instant)
        /// Ended and not restarted (an expected exit under `autorestart = unexpected`, or `false`).
        case exited(status: Int32)
    }

    /// What the driver must do.
    public enum Action: Sendable, Equatable {
        /// Spawn the process now, then report ``spawned(pid:now:)`` or ``spawnFailed(now:random:)``.
        case spawn
        /// Call ``startTimerFired(pid:now:)`` at this instant.
        case checkStarted(at: ContinuousClock.Instant)
        /// Call ``backoffFired(now:)`` at this instant.
        case restart(at: ContinuousClock.Instant)
        /// Send `signal` to the process group, then call ``killTimerFired(pid:now:)`` at `killAt`.
        case signal(Int32, pid: Int32, killAt: ContinuousClock.Instant)
        /// SIGKILL the process group now.
        case kill(pid: Int32)
    }

    /// The restart rules, from the program's configuration.
    public struct Policy: Sendable, Equatable {
        public var shouldRestart: @Sendable (Int32) -> Bool
        public var startSeconds: Duration
        public var startRetries: Int
        public var stopSignal: Int32
        public var stopWait: Duration
        public var backoffInitial: Duration
        public var backoffMax: Duration
        public var crashLoopDeaths: Int
        public var crashLoopWindow: Duration

        public init(
            shouldRestart: @escaping @Sendable (Int32) -> Bool, startSeconds: Duration = .seconds(1), startRetries: Int = 3,
            stopSignal: Int32 = 15, stopWait: Duration = .seconds(10), backoffInitial: Duration = .seconds(1),
            backoffMax: Duration = .seconds(60), crashLoopDeaths: Int = 5, crashLoopWindow: Duration = .seconds(60)
        ) {
            self.shouldRestart = shouldRestart
            self.startSeconds = startSeconds
            self.startRetries = startRetries
            self.stopSignal = stopSignal
            self.stopWait = stopWait
            self.backoffInitial = max(backoffInitial, .seconds(1))
            self.backoffMax = max(backoffMax, self.backoffInitial)
            self.crashLoopDeaths = crashLoopDeaths
            self.crashLoopWindow = crashLoopWindow
        }

        public static func == (lhs: Policy, rhs: Policy) -> Bool {
            lhs.startSeconds == rhs.startSeconds && lhs.startRetries == rhs.startRetries && lhs.stopSignal == rhs.stopSignal
                && lhs.stopWait == rhs.stopWait && lhs.backoffInitial == rhs.backoffInitial && lhs.backoffMax == rhs.backoffMax
                && lhs.crashLoopDeaths == rhs.crashLoopDeaths && lhs.crashLoopWindow == rhs.crashLoopWindow
        }
    }

    public private(set) var state: State = .stopped
    public var policy: Policy
    /// Restarts after a death (not counting the first start).
    public private(set) var restarts = 0
    /// Deaths (unexpected or not) that led to a restart, in order, for the crash-loop window.
    public private(set) var deaths: [ContinuousClock.Instant] = []
    /// Deaths since the process last proved stable (lived `crashLoopWindow`); drives the backoff.
    public private(set) var consecutiveFailures = 0
    /// Starts in a row that died before `startsecs`.
    public private(set) var failedStarts = 0
    /// The last exit status (exit code, or 128 + signal).
    public private(set) var lastExitStatus: Int32?
    /// The delay of the pending (or last) restart.
    public private(set) var lastBackoff: Duration = .zero
    /// True while the slot should have a process (a stop request clears it).
    public private(set) var wanted = false

    public init(policy: Policy) {
        self.policy = policy
    }

    /// The pid of the live process, if any.
    public var pid: Int32? {
        switch state {
        case .starting(let pid, _), .running(let pid, _), .stopping(let pid, _): pid
        default: nil
        }
    }

    /// True when the slot has no process and none is coming (stopped or exited).
    public var isIdle: Bool {
        switch state {
        case .stopped, .exited: true
        default: false
        }
    }

    /// Crash loop: `crashLoopDeaths` deaths within `crashLoopWindow`, or more failed starts in a
    /// row than `startretries`. Such a slot is reported FAILED and restarted at the backoff cap
    /// until it stays up for a whole window.
    public func isCrashLooping(now: ContinuousClock.Instant) -> Bool {
        if case .running(_, let since) = state, now - since >= policy.crashLoopWindow { return false }
        if failedStarts > policy.startRetries { return true }
        let recent = deaths.filter { now - $0 < policy.crashLoopWindow }.count
        return recent >= policy.crashLoopDeaths
    }

    /// The supervisord-style state name for status output and metrics.
    public func stateName(now: ContinuousClock.Instant) -> String {
        switch state {
        case .stopped: return "STOPPED"
        case .starting: return "STARTING"
        case .running: return isCrashLooping(now: now) ? "FAILED" : "RUNNING"
        case .backoff: return isCrashLooping(now: now) ? "FAILED" : "BACKOFF"
        case .stopping: return "STOPPING"
        case .exited: return "EXITED"
        }
    }

    // MARK: Events

    /// The slot should run: spawn now unless a process is already there or a restart is pending.
    public mutating func start(now: ContinuousClock.Instant) -> Action? {
        wanted = true
        switch state {
        case .stopped, .exited:
            return .spawn
        case .starting, .running, .backoff, .stopping:
            return nil
        }
    }

    /// The process was spawned.
    public mutating func spawned(pid: Int32, now: ContinuousClock.Instant) -> Action? {
        state = .starting(pid: pid, since: now)
        return .checkStarted(at: now + policy.startSeconds)
    }

    /// The process could not be spawned (missing executable, out of resources): counts as a
    /// failed start and is retried with backoff.
    public mutating func spawnFailed(now: ContinuousClock.Instant, random: Double) -> Action? {
        lastExitStatus = 127
        failedStarts += 1
        return scheduleRestart(now: now, random: random)
    }

    /// `startsecs` after the spawn: a process still there counts as started.
    public mutating func startTimerFired(pid: Int32, now: ContinuousClock.Instant) -> Action? {
        guard case .starting(let current, _) = state, current == pid else { return nil }
        state = .running(pid: pid, since: now)
        failedStarts = 0
        return nil
    }

    /// The process exited with `status` (exit code, or 128 + signal).
    public mutating func exited(pid: Int32, status: Int32, now: ContinuousClock.Instant, random: Double) -> Action? {
        lastExitStatus = status
        switch state {
        case .stopping(let current, _) where current == pid:
            state = .stopped
            return nil
        case .starting(let current, let since) where current == pid:
            if now - since < policy.startSeconds { failedStarts += 1 }
            return afterExit(status: status, now: now, random: random)
        case .running(let current, let since) where current == pid:
            if now - since >= policy.crashLoopWindow { consecutiveFailures = 0 }
            return afterExit(status: status, now: now, random: random)
        default:
            return nil
        }
    }

    /// The restart delay is over.
    public mutating func backoffFired(now: ContinuousClock.Instant) -> Action? {
        guard case .backoff(let until) = state, now >= until, wanted else { return nil }
        restarts += 1
        state = .stopped
        return .spawn
    }

    /// Stop the slot: signal a live process (SIGKILL after `stopwaitsecs`), cancel a pending restart.
    /// - Parameter within: a shorter wait than `stopwaitsecs` before the SIGKILL (fencing: the
    ///   processes must be gone before another supervisor may take their work over).
    public mutating func stop(now: ContinuousClock.Instant, within: Duration? = nil) -> Action? {
        wanted = false
        switch state {
        case .starting(let pid, _), .running(let pid, _):
            let deadline = now + min(policy.stopWait, within ?? policy.stopWait)
            state = .stopping(pid: pid, deadline: deadline)
            return .signal(policy.stopSignal, pid: pid, killAt: deadline)
        case .backoff:
            state = .stopped
            return nil
        case .stopped, .exited, .stopping:
            return nil
        }
    }

    /// `stopwaitsecs` after the stop signal: a process still there is killed.
    public mutating func killTimerFired(pid: Int32, now: ContinuousClock.Instant) -> Action? {
        guard case .stopping(let current, let deadline) = state, current == pid, now >= deadline else { return nil }
        return .kill(pid: pid)
    }

    // MARK: Rules

    private mutating func afterExit(status: Int32, now: ContinuousClock.Instant, random: Double) -> Action? {
        guard wanted, policy.shouldRestart(status) else {
            state = .exited(status: status)
            return nil
        }
        return scheduleRestart(now: now, random: random)
    }

    private mutating func scheduleRestart(now: ContinuousClock.Instant, random: Double) -> Action? {
        deaths.append(now)
        deaths.removeAll { now - $0 >= policy.crashLoopWindow }
        consecutiveFailures += 1
        let delay = Self.backoff(
            failures: consecutiveFailures, crashLooping: isCrashLooping(now: now),
            initial: policy.backoffInitial, cap: policy.backoffMax, random: random
        )
        lastBackoff = delay
        let until = now + delay
        state = .backoff(until: until)
        return .restart(at: until)
    }

    /// Capped exponential backoff with jitter, never under `initial` (itself never under 1 s):
    /// `initial × 2^(failures−1)` capped at `cap` (the cap itself while crash-looping), then
    /// scaled by a random factor in [0.8, 1.0].
    public static func backoff(failures: Int, crashLooping: Bool, initial: Duration, cap: Duration, random: Double) -> Duration {
        let initialSeconds = max(1, Self.seconds(initial))
        let capSeconds = max(initialSeconds, Self.seconds(cap))
        let exponent = Double(min(max(failures - 1, 0), 30))
        let base = crashLooping ? capSeconds : min(capSeconds, initialSeconds * pow2(exponent))
        let jittered = base * (0.8 + 0.2 * min(max(random, 0), 1))
        return .milliseconds(Int64(max(initialSeconds, jittered) * 1000))
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    private static func pow2(_ exponent: Double) -> Double {
        var result = 1.0
        var remaining = Int(exponent)
        while remaining > 0 { result *= 2; remaining -= 1 }
        return result
    }
}
