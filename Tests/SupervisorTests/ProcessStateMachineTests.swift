import Supervisor
import Testing

@Suite("Process state machine")
struct ProcessStateMachineTests {
    let start = ContinuousClock.now

    func policy(
        autorestart: (Int32) -> Bool = { $0 != 0 }, startSeconds: Duration = .seconds(1), startRetries: Int = 3,
        backoffInitial: Duration = .seconds(1), backoffMax: Duration = .seconds(60), deaths: Int = 5, window: Duration = .seconds(60)
    ) -> ProcessStateMachine.Policy {
        let restart = autorestart
        let codes: Set<Int32> = Set((0...255).map(Int32.init).filter { !restart($0) })
        return ProcessStateMachine.Policy(
            shouldRestart: { !codes.contains($0) }, startSeconds: startSeconds, startRetries: startRetries, stopSignal: 15,
            stopWait: .seconds(10), backoffInitial: backoffInitial, backoffMax: backoffMax, crashLoopDeaths: deaths, crashLoopWindow: window
        )
    }

    @Test func startRunsAfterStartsecs() {
        var machine = ProcessStateMachine(policy: policy())
        #expect(machine.start(now: start) == .spawn)
        #expect(machine.spawned(pid: 10, now: start) == .checkStarted(at: start + .seconds(1)))
        #expect(machine.stateName(now: start) == "STARTING")
        #expect(machine.startTimerFired(pid: 10, now: start + .seconds(1)) == nil)
        #expect(machine.stateName(now: start + .seconds(1)) == "RUNNING")
        #expect(machine.pid == 10)
        // A second start request while running does nothing.
        #expect(machine.start(now: start + .seconds(2)) == nil)
    }

    @Test func staleTimersAreIgnored() {
        var machine = ProcessStateMachine(policy: policy())
        _ = machine.start(now: start)
        _ = machine.spawned(pid: 10, now: start)
        #expect(machine.startTimerFired(pid: 99, now: start + .seconds(1)) == nil)
        #expect(machine.stateName(now: start) == "STARTING")
        #expect(machine.killTimerFired(pid: 10, now: start + .seconds(100)) == nil)
        #expect(machine.exited(pid: 99, status: 1, now: start, random: 0) == nil)
        #expect(machine.pid == 10)
    }

    @Test func expectedExitIsNotRestartedUnderUnexpected() {
        var machine = ProcessStateMachine(policy: policy())
        _ = machine.start(now: start)
        _ = machine.spawned(pid: 10, now: start)
        _ = machine.startTimerFired(pid: 10, now: start + .seconds(1))
        #expect(machine.exited(pid: 10, status: 0, now: start + .seconds(5), random: 0) == nil)
        #expect(machine.state == .exited(status: 0))
        #expect(machine.stateName(now: start + .seconds(5)) == "EXITED")
        #expect(machine.isIdle)
    }

    @Test func unexpectedExitBacksOffExponentiallyNeverUnderOneSecond() {
        var machine = ProcessStateMachine(policy: policy(deaths: 100))
        _ = machine.start(now: start)
        var now = start
        var delays: [Duration] = []
        for pid in Int32(1)...6 {
            _ = machine.spawned(pid: pid, now: now)
            now = now + .seconds(2)
            _ = machine.startTimerFired(pid: pid, now: now)
            guard case .restart(let at) = machine.exited(pid: pid, status: 3, now: now, random: 1) else {
                Issue.record("no restart scheduled")
                return
            }
            delays.append(at - now)
            now = at
            #expect(machine.backoffFired(now: now) == .spawn)
        }
        #expect(delays == [.seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(16), .seconds(32)])
        #expect(machine.restarts == 6)
        // Jitter only shortens, and never under the initial second.
        let low = ProcessStateMachine.backoff(failures: 1, crashLooping: false, initial: .seconds(1), cap: .seconds(60), random: 0)
        #expect(low == .seconds(1))
        let jittered = ProcessStateMachine.backoff(failures: 4, crashLooping: false, initial: .seconds(1), cap: .seconds(60), random: 0)
        #expect(jittered == .milliseconds(6400))
        let capped = ProcessStateMachine.backoff(failures: 30, crashLooping: false, initial: .seconds(1), cap: .seconds(60), random: 1)
        #expect(capped == .seconds(60))
        // A policy asking for less than a second gets a second.
        #expect(policy(backoffInitial: .milliseconds(10)).backoffInitial == .seconds(1))
    }

    @Test func crashLoopIsFailedAndRetriedAtTheCap() {
        var machine = ProcessStateMachine(policy: policy(startSeconds: .milliseconds(100), startRetries: 100, backoffMax: .seconds(30), deaths: 3, window: .seconds(60)))
        _ = machine.start(now: start)
        var now = start
        var last: Duration = .zero
        for pid in Int32(1)...3 {
            _ = machine.spawned(pid: pid, now: now)
            now = now + .seconds(1)
            _ = machine.startTimerFired(pid: pid, now: now)
            guard case .restart(let at) = machine.exited(pid: pid, status: 139, now: now, random: 1) else {
                Issue.record("no restart")
                return
            }
            last = at - now
            now = at
            _ = machine.backoffFired(now: now)
        }
        #expect(last == .seconds(30))
        #expect(machine.isCrashLooping(now: now))
        // It keeps being retried while FAILED.
        _ = machine.spawned(pid: 4, now: now)
        #expect(machine.stateName(now: now) == "STARTING")
        _ = machine.startTimerFired(pid: 4, now: now + .seconds(1))
        #expect(machine.stateName(now: now + .seconds(1)) == "FAILED")
        // Staying up for a whole window clears it.
        #expect(machine.stateName(now: now + .seconds(62)) == "RUNNING")
    }

    @Test func startFailuresBeyondStartretriesAreFailed() {
        var machine = ProcessStateMachine(policy: policy(startSeconds: .seconds(5), startRetries: 2, deaths: 100))
        _ = machine.start(now: start)
        var now = start
        for pid in Int32(1)...3 {
            _ = machine.spawned(pid: pid, now: now)
            now = now + .milliseconds(100)
            guard case .restart(let at) = machine.exited(pid: pid, status: 1, now: now, random: 1) else {
                Issue.record("no restart")
                return
            }
            now = at
            _ = machine.backoffFired(now: now)
        }
        #expect(machine.failedStarts == 3)
        #expect(machine.isCrashLooping(now: now))
        // A spawn that fails outright (missing executable) counts too and is retried.
        guard case .restart = machine.spawnFailed(now: now, random: 0) else {
            Issue.record("spawn failure not retried")
            return
        }
        #expect(machine.stateName(now: now) == "FAILED")
    }

    @Test func stopSignalsThenKills() {
        var machine = ProcessStateMachine(policy: policy())
        _ = machine.start(now: start)
        _ = machine.spawned(pid: 10, now: start)
        let action = machine.stop(now: start + .seconds(1))
        #expect(action == .signal(15, pid: 10, killAt: start + .seconds(11)))
        #expect(machine.stateName(now: start) == "STOPPING")
        #expect(machine.killTimerFired(pid: 10, now: start + .seconds(5)) == nil)
        #expect(machine.killTimerFired(pid: 10, now: start + .seconds(11)) == .kill(pid: 10))
        // The exit of a stopping process is never restarted, whatever its status.
        #expect(machine.exited(pid: 10, status: 137, now: start + .seconds(11), random: 0) == nil)
        #expect(machine.state == .stopped)
        #expect(!machine.wanted)
    }

    @Test func aStopWithinAShorterWaitKillsSooner() {
        var machine = ProcessStateMachine(policy: policy())
        _ = machine.start(now: start)
        _ = machine.spawned(pid: 10, now: start)
        #expect(machine.stop(now: start + .seconds(1), within: .seconds(2)) == .signal(15, pid: 10, killAt: start + .seconds(3)))
        #expect(machine.killTimerFired(pid: 10, now: start + .seconds(3)) == .kill(pid: 10))
        var patient = ProcessStateMachine(policy: policy())
        _ = patient.start(now: start)
        _ = patient.spawned(pid: 11, now: start)
        #expect(patient.stop(now: start, within: .seconds(60)) == .signal(15, pid: 11, killAt: start + .seconds(10)), "never longer than stopwaitsecs")
    }

    @Test func stopCancelsAPendingRestart() {
        var machine = ProcessStateMachine(policy: policy())
        _ = machine.start(now: start)
        _ = machine.spawned(pid: 10, now: start)
        _ = machine.exited(pid: 10, status: 1, now: start + .seconds(3), random: 0)
        #expect(machine.stateName(now: start + .seconds(3)) == "BACKOFF")
        #expect(machine.stop(now: start + .seconds(3)) == nil)
        #expect(machine.backoffFired(now: start + .seconds(10)) == nil)
        #expect(machine.state == .stopped)
    }

    @Test(arguments: [
        (ProcessStateMachineTests.Restart.always, Int32(0), true),
        (.always, 1, true),
        (.never, 1, false),
        (.never, 0, false),
        (.unexpected, 0, false),
        (.unexpected, 2, true),
        (.unexpected, 143, true),
    ])
    func restartPolicyByExitStatus(_ restart: Restart, _ status: Int32, _ restarted: Bool) {
        let rule: @Sendable (Int32) -> Bool = switch restart {
        case .always: { _ in true }
        case .never: { _ in false }
        case .unexpected: { $0 != 0 }
        }
        var machine = ProcessStateMachine(policy: ProcessStateMachine.Policy(shouldRestart: rule))
        _ = machine.start(now: start)
        _ = machine.spawned(pid: 1, now: start)
        _ = machine.startTimerFired(pid: 1, now: start + .seconds(1))
        let action = machine.exited(pid: 1, status: status, now: start + .seconds(2), random: 0)
        if case .restart = action { #expect(restarted) } else { #expect(!restarted) }
    }

    enum Restart: Sendable { case always, never, unexpected }
}

@Suite("Autoscaler")
struct AutoscalerTests {
    let start = ContinuousClock.now

    @Test func aDeploymentRunsWithinTheTighterOfItsAndSupervisorConfsBounds() {
        // The orchestrator's default 1…4 under `max_procs = 1` (exchanger run --max-procs 1): one worker.
        #expect(Supervisor.effectiveBounds(deployment: 1...4, program: 1...1) == 1...1)
        // supervisor.conf allows more than the orchestrator: the orchestrator's limit holds.
        #expect(Supervisor.effectiveBounds(deployment: 1...4, program: 1...8) == 1...4)
        // A higher min_procs in the file raises the floor, never above the ceiling.
        #expect(Supervisor.effectiveBounds(deployment: 1...4, program: 2...8) == 2...4)
        #expect(Supervisor.effectiveBounds(deployment: 3...4, program: 1...2) == 2...2)
        #expect(Supervisor.effectiveBounds(deployment: 0...0, program: 1...4) == 1...1, "never below one worker while running")
    }

    @Test func wantedIsCeilOfVisibleOverMessagesPerProcClamped() {
        #expect(Autoscaler.wanted(visible: 0, messagesPerProc: 100, min: 1, max: 4) == 1)
        #expect(Autoscaler.wanted(visible: 1, messagesPerProc: 100, min: 0, max: 4) == 1)
        #expect(Autoscaler.wanted(visible: 100, messagesPerProc: 100, min: 0, max: 4) == 1)
        #expect(Autoscaler.wanted(visible: 101, messagesPerProc: 100, min: 0, max: 4) == 2)
        #expect(Autoscaler.wanted(visible: 10_000, messagesPerProc: 100, min: 0, max: 4) == 4)
        #expect(Autoscaler.wanted(visible: 0, messagesPerProc: 100, min: 0, max: 4) == 0)
    }

    @Test func upAtOnceDownAfterTheWindow() {
        var scaler = Autoscaler(window: .seconds(60))
        #expect(scaler.decide(visible: 50, messagesPerProc: 100, min: 1, max: 8, now: start) == 1)
        #expect(scaler.decide(visible: 650, messagesPerProc: 100, min: 1, max: 8, now: start + .seconds(1)) == 7)
        // Lower wishes hold the size until the window is over, then shrink to their peak.
        #expect(scaler.decide(visible: 250, messagesPerProc: 100, min: 1, max: 8, now: start + .seconds(2)) == 7)
        #expect(scaler.decide(visible: 350, messagesPerProc: 100, min: 1, max: 8, now: start + .seconds(30)) == 7)
        #expect(scaler.decide(visible: 0, messagesPerProc: 100, min: 1, max: 8, now: start + .seconds(61)) == 7)
        #expect(scaler.decide(visible: 0, messagesPerProc: 100, min: 1, max: 8, now: start + .seconds(62)) == 4)
        // A rise in between resets the window.
        #expect(scaler.decide(visible: 800, messagesPerProc: 100, min: 1, max: 8, now: start + .seconds(63)) == 8)
        #expect(scaler.decide(visible: 0, messagesPerProc: 100, min: 1, max: 8, now: start + .seconds(64)) == 8)
        #expect(scaler.decide(visible: 0, messagesPerProc: 100, min: 1, max: 8, now: start + .seconds(124)) == 1)
    }

    @Test func boundsChangeAppliesAtOnce() {
        var scaler = Autoscaler(window: .seconds(60))
        #expect(scaler.decide(visible: 1000, messagesPerProc: 100, min: 0, max: 8, now: start) == 8)
        #expect(scaler.decide(visible: 1000, messagesPerProc: 100, min: 0, max: 2, now: start + .seconds(1)) == 2)
        #expect(scaler.decide(visible: 0, messagesPerProc: 100, min: 3, max: 5, now: start + .seconds(2)) == 3)
    }
}
