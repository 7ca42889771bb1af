import ConcurrencySupport
import Foundation
import Logging
import Orchestrator
import Synchronization

extension StopSignal {
    /// Sleeps `duration`, returning early (within 50 ms, 10 ms with a `wakeup`) when a stop is
    /// requested, the task is cancelled, or `wakeup` is signalled.
    public func sleep(for duration: Duration, wakeup: WorkLoopWakeup? = nil) async {
        let deadline = ContinuousClock.now + duration
        let generation = wakeup?.current
        let slice: Duration = wakeup == nil ? .milliseconds(50) : .milliseconds(10)
        while !isRequested, !Task.isCancelled {
            if let wakeup, wakeup.current != generation { return }
            let left = deadline - ContinuousClock.now
            if left <= .zero { return }
            try? await Task.sleep(for: min(left, slice))
        }
    }
}

/// The lifecycle work loop of one orchestrator replica: claims the next exchange whose lease is
/// free or expired, advances it step by step while renewing the lease every third of it, and
/// starts over; waits ``OrchestratorServiceSettings/pollInterval`` when there is nothing to claim.
/// ``run(stop:)`` runs ``OrchestratorServiceSettings/concurrentExchanges`` such lanes side by side,
/// each with its own lease owner (`replica/1`, `replica/2`, …), so an exchange waiting in a copy
/// retry occupies one lane and the others go on claiming and advancing other exchanges.
///
/// It follows ``ExchangeRunner/workOnce(owner:lease:)`` (an exchange that reaches a final state has
/// its lease released; one in PROCESSING whose queues still hold messages keeps a lease of the
/// completion-check interval) and adds a stop between steps: once ``StopSignal/request()`` is
/// called, the step in hand finishes, the lease is given back (another replica resumes the
/// exchange at once) and ``run(stop:)`` returns. Cancelling the task interrupts the step in hand
/// (every step is idempotent, so the next owner simply runs it again) and also gives the lease back.
public struct OrchestratorWorkLoop: Sendable {
    /// The lifecycle.
    public let runner: ExchangeRunner
    /// This replica's owner name in the leases.
    public let owner: String
    /// Lease and poll interval.
    public let settings: OrchestratorServiceSettings
    /// Where it logs.
    public let logger: Logger
    /// Ends the idle wait early (the lifecycle event listener signals it).
    public let wakeup: WorkLoopWakeup?
    /// Consecutive failed steps per exchange, shared by the lanes: the retry delay doubles with them.
    let stepFailures: LockedBox<[String: Int]>

    /// A value with the given fields.
    public init(
        runner: ExchangeRunner, owner: String, settings: OrchestratorServiceSettings, logger: Logger, wakeup: WorkLoopWakeup? = nil
    ) {
        self.init(runner: runner, owner: owner, settings: settings, logger: logger, wakeup: wakeup, stepFailures: LockedBox([:]))
    }

    init(
        runner: ExchangeRunner, owner: String, settings: OrchestratorServiceSettings, logger: Logger, wakeup: WorkLoopWakeup?,
        stepFailures: LockedBox<[String: Int]>
    ) {
        self.runner = runner
        self.owner = owner
        self.settings = settings
        self.logger = logger
        self.wakeup = wakeup
        self.stepFailures = stepFailures
    }

    /// Works until `stop` is requested (or the task is cancelled), in
    /// ``OrchestratorServiceSettings/concurrentExchanges`` lanes (see the type). Errors are logged
    /// and retried with a capped backoff; the exchange at fault keeps its lease only for the step
    /// retry delay (``OrchestratorServiceSettings/stepRetryDelay``, doubling with each failure in a
    /// row, at most the lease), so any lane may try it again then.
    public func run(stop: StopSignal) async {
        let lanes = max(1, settings.concurrentExchanges)
        guard lanes > 1 else { return await runLane(stop: stop) }
        await withTaskGroup(of: Void.self) { group in
            for lane in 1...lanes {
                let loop = OrchestratorWorkLoop(
                    runner: runner, owner: "\(owner)/\(lane)", settings: settings, logger: logger, wakeup: wakeup, stepFailures: stepFailures)
                group.addTask { await loop.runLane(stop: stop) }
            }
        }
    }

    /// One lane: claims, advances, starts over.
    func runLane(stop: StopSignal) async {
        var failures = 0
        while !stop.isRequested, !Task.isCancelled {
            do {
                if try await workOnce(stop: stop) == nil { await stop.sleep(for: settings.pollInterval, wakeup: wakeup) }
                failures = 0
            } catch {
                if Task.isCancelled || error is CancellationError { break }
                failures += 1
                logger.error("lifecycle step failed", metadata: ["error": "\(error)", "replica": "\(owner)"])
                let wait = min(settings.pollInterval * Double(1 << min(failures, 5)), .seconds(30))
                await stop.sleep(for: wait)
            }
        }
        logger.info("lifecycle work loop stopped", metadata: ["replica": "\(owner)"])
    }

    /// One claim: nil when nothing was claimable (or a stop is requested), else the exchange after
    /// the steps taken.
    public func workOnce(stop: StopSignal) async throws -> ExchangeRecord? {
        guard !stop.isRequested else { return nil }
        let store = runner.store
        let owner = owner
        let lease = settings.lease
        guard let claimed = try await store.claimNextWork(owner: owner, lease: lease) else { return nil }
        let jobID = claimed.jobID
        logger.debug("exchange claimed", metadata: ["jobId": "\(jobID)", "state": "\(claimed.state)"])
        let outcome: ExchangeRecord?
        do {
            outcome = try await withThrowingTaskGroup(of: ExchangeRecord?.self) { group in
                group.addTask {
                    while true {
                        try await Task.sleep(for: lease / 3)
                        guard try await store.renewLease(jobID, owner: owner, lease: lease) else {
                            throw OrchestratorError(.leaseLost, "the lease of exchange \(jobID) was lost by \(owner)")
                        }
                    }
                }
                group.addTask { try await self.advance(jobID, stop: stop) }
                defer { group.cancelAll() }
                return try await group.next() ?? nil
            }
        } catch let error as OrchestratorError where error.code == .stateConflict {
            // The exchange moved while the step ran (a cancel, most often): nothing failed. The
            // lease goes back at once, so its next step (the teardown) does not wait for it.
            logger.info("exchange changed while a step ran; the lease is given back", metadata: [
                "jobId": "\(jobID)", "reason": "\(error.message)",
            ])
            await release(jobID)
            return claimed
        } catch {
            if Task.isCancelled || error is CancellationError {
                await release(jobID)
            } else if (error as? OrchestratorError)?.code != .leaseLost {
                // The step failed while its owner lives: the exchange is retried after the step
                // retry delay (doubling with each failure in a row, never longer than the lease),
                // by whichever lane claims it first, not after the whole lease.
                let failures = stepFailures.withLock { counts -> Int in
                    counts[jobID, default: 0] += 1
                    return counts[jobID] ?? 1
                }
                let delay = min(settings.stepRetryDelay * Double(1 << min(failures - 1, 16)), lease)
                _ = try? await store.renewLease(jobID, owner: owner, lease: max(delay, .milliseconds(100)))
            }
            throw error
        }
        stepFailures.withLock { _ = $0.removeValue(forKey: jobID) }
        guard let record = outcome else {
            // Stopped between steps: another replica may resume it at once.
            await release(jobID)
            return claimed
        }
        if record.state != claimed.state {
            logger.info("exchange advanced", metadata: ["jobId": "\(jobID)", "from": "\(claimed.state)", "state": "\(record.state)"])
        }
        if record.state.isFinal {
            try await store.releaseLease(jobID, owner: owner)
        } else if record.state == .processing {
            _ = try await store.renewLease(jobID, owner: owner, lease: max(settings.core.drain.checkInterval, .milliseconds(100)))
        }
        return record
    }

    /// Steps until the exchange is final, or PROCESSING with messages still in its queues; nil
    /// when a stop was requested between two steps.
    private func advance(_ jobID: String, stop: StopSignal) async throws -> ExchangeRecord? {
        while true {
            if stop.isRequested { return nil }
            let before = try await runner.store.get(jobID)
            // Waits inside the step (copy retry backoff, waits for workers) end when a stop is requested.
            let record = try await StopRequest.$signal.withValue(stop) { try await runner.step(jobID) }
            if record.state.isFinal { return record }
            if record.state == .processing, before?.state == .processing { return record }
        }
    }

    /// Gives the lease back outside the (possibly cancelled) current task; failures only logged.
    private func release(_ jobID: String) async {
        let store = runner.store
        let owner = owner
        let released = await Task {
            do {
                return try await store.releaseLease(jobID, owner: owner)
            } catch {
                return false
            }
        }.value
        logger.info("lease given back", metadata: ["jobId": "\(jobID)", "released": "\(released)"])
    }
}
