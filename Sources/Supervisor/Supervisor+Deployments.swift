import Broker
import Deployments
import Foundation
import Logging

/// What a deployment pass read from the broker, applied by the event loop.
struct ReconcileResult: Sendable {
    /// The deployments this supervisor owns now.
    var owned: [Deployment]
    /// Visible messages per queue scaled on.
    var visible: [String: Int]
    /// The lease had expired: everything held before is given up first.
    var leaseWasLost: Bool
    /// Stopped deployments released in this pass.
    var released: [String]
}

/// What the event loop hands to a deployment pass: the state to report.
struct ReconcileSnapshot: Sendable {
    var workers: [WorkerRecord]
    var counts: [DeploymentCounts]
    /// Stopped deployments this supervisor owns whose workers are all gone.
    var releasable: [String]
    var globalQueues: [String]
}

extension Supervisor {
    /// Wakes the event loop every `reconcile_interval`.
    func tickReconcile() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.supervisor.reconcileInterval)
            reconcileNow()
        }
    }

    /// Wakes the event loop when a deployment row changes (NOTIFY on PostgreSQL).
    func watchDeployments() async {
        guard let store = deploymentStore else { return }
        while !Task.isCancelled {
            do {
                let mark = try await store.changeMark()
                try await store.waitForChange(after: mark, timeout: .seconds(30))
                reconcileNow()
            } catch {
                // The periodic pass carries on; try listening again shortly.
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Starts a deployment pass unless one is running (passes coalesce). The database work runs
    /// in its own task, so a slow or unreachable database never holds up restarts, stops and
    /// signals; its result comes back as an event and is applied by ``apply(_:)``.
    func startReconcile() {
        guard let broker = brokerHandle, !reconcileInFlight else { return }
        reconcileInFlight = true
        reconcileStartedAt = ContinuousClock.now
        let snapshot = reconcileSnapshot()
        let store = deploymentStore
        let identity = identity()
        let lease = configuration.supervisor.leaseDuration
        let sink = eventSink
        let logger = self.logger
        Task {
            let result: Result<ReconcileResult, any Error>
            do {
                result = .success(try await Self.readDeployments(
                    broker: broker, store: store, identity: identity, lease: lease, snapshot: snapshot, logger: logger))
            } catch {
                result = .failure(error)
            }
            sink.yield(.reconciled(result))
        }
    }

    /// The database side of a pass: report what runs, renew the heartbeat (registering again
    /// after a lost lease), expire dead supervisors, release finished stopped deployments, claim
    /// this supervisor's share, read the queue depths.
    static func readDeployments(
        broker: Broker, store: DeploymentStore?, identity: SupervisorIdentity, lease: Duration,
        snapshot: ReconcileSnapshot, logger: Logger
    ) async throws -> ReconcileResult {
        var owned: [Deployment] = []
        var leaseWasLost = false
        var released: [String] = []
        if let store {
            do {
                try await store.heartbeat(id: identity.id, lease: lease, status: .running)
                try await store.report(supervisorID: identity.id, deployments: snapshot.counts, workers: snapshot.workers)
                // Its workers that died without withdrawing their presence (`exchanger ps` shows
                // them unreachable until then).
                try await store.forgetStalePresences(supervisorID: identity.id, runningPIDs: snapshot.workers.compactMap(\.pid))
            } catch let error as DeploymentError where error.code == .leaseLost {
                // Away longer than the lease (the database was unreachable, the host paused):
                // other supervisors may own these deployments now, so their workers stop here
                // and this supervisor registers again and claims a fresh share.
                logger.warning("this supervisor's lease expired; stopping its per-exchange workers and registering again")
                leaseWasLost = true
                try await store.register(identity, lease: lease)
            }
            let expired = try await store.expireDeadSupervisors()
            if !expired.isEmpty {
                logger.warning("supervisors' leases expired; their deployments are free to take over", metadata: ["supervisors": "\(expired)"])
            }
            if !leaseWasLost {
                for id in snapshot.releasable where try await store.release(deploymentID: id, supervisorID: identity.id) {
                    released.append(id)
                }
            }
            owned = try await store.claim(supervisorID: identity.id, lease: lease)
        }
        let queues = Set(owned.map(\.queue)).union(snapshot.globalQueues)
        let counters = queues.isEmpty ? [:] : try await broker.counters(Array(queues))
        return ReconcileResult(
            owned: owned, visible: counters.mapValues { Int($0.visible) }, leaseWasLost: leaseWasLost, released: released)
    }

    /// The state to report, taken when a pass starts.
    func reconcileSnapshot() -> ReconcileSnapshot {
        let now = ContinuousClock.now
        var workers: [WorkerRecord] = []
        var running: [String: Int] = [:]
        for slot in slots.values {
            // A global program is reported also between processes (BACKOFF, a FAILED crash loop),
            // so `exchanger ps` shows it; a deployment's slot while it has a process, or when it
            // crash-loops (a worker that cannot start, e.g. a setting missing: FAILED is not a live
            // state, so it never holds up a teardown, and the orchestrator shows it in the exchange).
            let pid = slot.machine.pid
            let state = slot.machine.stateName(now: now)
            guard pid != nil || slot.key.deploymentID.isEmpty || state == WorkerState.failed.rawValue else { continue }
            if pid != nil, !slot.key.deploymentID.isEmpty { running[slot.key.deploymentID, default: 0] += 1 }
            workers.append(WorkerRecord(
                supervisorID: identifier, program: slot.key.program, instance: slot.key.instance,
                deploymentID: slot.key.deploymentID.isEmpty ? nil : slot.key.deploymentID, pid: pid,
                state: WorkerState(rawValue: state),
                startedAt: slot.startedAt ?? Date(), restarts: slot.machine.restarts, lastExitStatus: slot.machine.lastExitStatus
            ))
        }
        var counts: [DeploymentCounts] = []
        var releasable: [String] = []
        for (id, deployment) in ownedDeployments {
            let group = GroupKey(program: deployment.program, deploymentID: id)
            counts.append(DeploymentCounts(id: id, targetProcs: groupTargets[group] ?? 0, runningProcs: running[id] ?? 0))
            if deployment.desiredState == .stopped, !slots.keys.contains(where: { $0.deploymentID == id }) {
                releasable.append(id)
            }
        }
        let globalQueues = configuration.programs.filter { $0.scope == .global && $0.autostart }.compactMap(\.queue)
        return ReconcileSnapshot(workers: workers, counts: counts, releasable: releasable, globalQueues: globalQueues)
    }

    /// Applies a pass: scales global programs with a queue and every owned deployment, stops
    /// what is stopped or no longer owned.
    func apply(_ outcome: Result<ReconcileResult, any Error>) {
        reconcileInFlight = false
        let result: ReconcileResult
        switch outcome {
        case .success(let value):
            result = value
        case .failure(let error):
            // Once per change of state, not once per pass: a database away for minutes is one line.
            let wasFailing = lastReconcile?.error != nil
            lastReconcile = (ContinuousClock.now, "\(error)")
            logger.log(
                level: wasFailing ? .debug : .error, "deployment pass failed; retrying at every pass", metadata: ["error": "\(error)"])
            return
        }
        if lastReconcile?.error != nil { logger.notice("deployment pass succeeded again") }
        lastRenewal = reconcileStartedAt
        if fenced {
            fenced = false
            logger.notice("lease renewed after fencing; claiming deployments again")
        }
        guard !draining else { return }
        let now = ContinuousClock.now
        let settings = configuration.supervisor
        if result.leaseWasLost { abandonDeployments() }
        for id in result.released {
            if let deployment = ownedDeployments.removeValue(forKey: id) {
                groupTargets.removeValue(forKey: GroupKey(program: deployment.program, deploymentID: id))
                logger.info("deployment stopped; released", metadata: ["deploymentId": "\(id)", "exchangeId": "\(deployment.exchangeID)"])
            }
        }
        for (queue, visible) in result.visible { metrics.queueDepth(queue: queue, visible: visible) }

        // Global programs that scale on a queue.
        for program in configuration.programs where program.scope == .global && program.autostart && !heldStopped.contains(program.name) {
            guard let queue = program.queue else { continue }
            let group = GroupKey(program: program.name, deploymentID: "")
            var scaler = autoscalers[group] ?? Autoscaler(window: settings.scaleDownWindow)
            let target = scaler.decide(
                visible: result.visible[queue] ?? 0, messagesPerProc: program.messagesPerProc,
                min: program.minProcs, max: program.maxProcs, now: now)
            autoscalers[group] = scaler
            setTarget(group, program: program, deployment: nil, count: target)
        }

        // Deployments this supervisor owns.
        var owned: [String: Deployment] = [:]
        for deployment in result.owned { owned[deployment.id] = deployment }
        for deployment in result.owned {
            let group = GroupKey(program: deployment.program, deploymentID: deployment.id)
            let known = ownedDeployments[deployment.id] != nil
            ownedDeployments[deployment.id] = deployment
            guard let program = configuration.program(named: deployment.program), program.scope == .perExchange else {
                if !known {
                    logger.error("deployment names a program that supervisor.conf has no per-exchange section for", metadata: [
                        "deploymentId": "\(deployment.id)", "program": "\(deployment.program)", "exchangeId": "\(deployment.exchangeID)",
                    ])
                }
                continue
            }
            let target: Int
            if deployment.desiredState == .running {
                var scaler = autoscalers[group] ?? Autoscaler(window: settings.scaleDownWindow)
                let bounds = Self.effectiveBounds(
                    deployment: deployment.minProcs...max(deployment.minProcs, deployment.maxProcs),
                    program: program.minProcs...max(program.minProcs, program.maxProcs))
                target = scaler.decide(
                    visible: result.visible[deployment.queue] ?? 0, messagesPerProc: deployment.messagesPerProc ?? program.messagesPerProc,
                    min: bounds.lowerBound, max: bounds.upperBound, now: now)
                autoscalers[group] = scaler
            } else {
                target = 0
                autoscalers.removeValue(forKey: group)
            }
            setTarget(group, program: program, deployment: deployment, count: target)
        }

        // Deployments no longer owned (lease lost, row removed): stop their workers.
        // The orchestrator removes a deployment's row once its workers are gone: a deployment that
        // disappears with no process of it left is the normal end of an exchange, logged at info.
        // One that still has a running process here was removed (or taken) under it: a warning.
        for (id, deployment) in ownedDeployments where owned[id] == nil {
            let metadata: Logger.Metadata = ["deploymentId": "\(id)", "exchangeId": "\(deployment.exchangeID)"]
            if slots.contains(where: { $0.key.deploymentID == id && $0.value.machine.pid != nil }) {
                logger.warning("deployment no longer owned by this supervisor; stopping its workers", metadata: metadata)
            } else {
                logger.info("deployment removed after its workers stopped; forgetting it", metadata: metadata)
            }
            forget(deployment)
        }
        lastReconcile = (ContinuousClock.now, nil)
    }

    /// Stops a deployment's workers and forgets it.
    func forget(_ deployment: Deployment) {
        let group = GroupKey(program: deployment.program, deploymentID: deployment.id)
        if let program = configuration.program(named: deployment.program) {
            setTarget(group, program: program, deployment: deployment, count: 0)
        }
        groupTargets.removeValue(forKey: group)
        autoscalers.removeValue(forKey: group)
        ownedDeployments.removeValue(forKey: deployment.id)
    }

    /// Self-fencing: when no pass has renewed this supervisor's lease for
    /// ``SupervisorSettings/effectiveFenceAfter`` (half the lease by default), it stops its
    /// per-exchange workers before the lease can expire and another supervisor take their
    /// deployments over. A pass stuck on a dead connection counts as not renewing. Logged once.
    func fenceIfCutOff(now: ContinuousClock.Instant) {
        guard deploymentStore != nil, !fenced, let last = lastRenewal else { return }
        let silent = now - last
        guard silent > configuration.supervisor.effectiveFenceAfter else { return }
        fenced = true
        let killWithin = Self.fenceKillWithin(configuration.supervisor)
        logger.warning("cannot renew this supervisor's lease; fencing: stopping its per-exchange workers before another supervisor takes them over", metadata: [
            "secondsSinceRenewal": "\(silent.components.seconds)", "leaseSeconds": "\(configuration.supervisor.leaseDuration.components.seconds)",
            "deployments": "\(ownedDeployments.count)", "killWithinSeconds": "\(Double(killWithin.components.seconds) + Double(killWithin.components.attoseconds) / 1e18)",
        ])
        // SIGTERM as always, but the SIGKILL comes before the lease can expire, whatever the
        // program's stopwaitsecs: the fence is only worth something if the processes are gone
        // when another supervisor may start the same work.
        stopWaitCap = killWithin
        abandonDeployments()
        stopWaitCap = nil
    }

    /// How long a fenced worker gets between SIGTERM and SIGKILL: what is left of the lease after
    /// the fence and one deployment pass, less a second; at least half a second.
    static func fenceKillWithin(_ settings: SupervisorSettings) -> Duration {
        max(.milliseconds(500), settings.leaseDuration - settings.effectiveFenceAfter - settings.reconcileInterval - .seconds(1))
    }

    /// Stops the workers of every deployment this supervisor held and forgets them.
    func abandonDeployments() {
        for deployment in ownedDeployments.values { forget(deployment) }
    }

    /// SIGHUP: re-reads `supervisor.conf` and applies only the difference. A file that does not
    /// parse changes nothing.
    func reloadConfiguration() {
        let path = configuration.file
        let fresh: SupervisorConfiguration
        do {
            fresh = try SupervisorConfiguration.load(path: path)
        } catch {
            logger.error("configuration not reloaded: it has an error; the running one stays", metadata: ["error": "\(error)"])
            return
        }
        let changes = fresh.changes(from: configuration)
        logger.info("configuration reloaded", metadata: [
            "added": "\(changes.added)", "removed": "\(changes.removed)", "restart": "\(changes.restart)", "rescale": "\(changes.rescale)",
        ])
        applyConfiguration(fresh)
        for name in changes.removed {
            for key in slots.keys where key.program == name { stopSlot(key, retire: true) }
            for group in groupTargets.keys where group.program == name { groupTargets.removeValue(forKey: group) }
        }
        for name in changes.restart {
            guard let program = fresh.program(named: name) else { continue }
            // Stop the old processes; the slots come back with the new settings once stopped.
            for key in slots.keys where key.program == name { replaceProgram(key, with: program, restart: true) }
        }
        for name in changes.rescale {
            guard let program = fresh.program(named: name) else { continue }
            for key in slots.keys where key.program == name { replaceProgram(key, with: program, restart: false) }
            if program.scope == .global, program.autostart, !heldStopped.contains(name) {
                let group = GroupKey(program: name, deploymentID: "")
                if program.queue == nil {
                    setTarget(group, program: program, deployment: nil, count: program.minProcs)
                } else {
                    autoscalers.removeValue(forKey: group)
                }
            }
        }
        for name in changes.added {
            guard let program = fresh.program(named: name), program.scope == .global, program.autostart else { continue }
            setTarget(GroupKey(program: name, deploymentID: ""), program: program, deployment: nil, count: program.minProcs)
        }
        reconcileNow()
    }

    /// The worker count a per-exchange deployment runs within on this supervisor: the range the
    /// orchestrator wrote on the deployment, narrowed to the program's `min_procs`…`max_procs` in
    /// supervisor.conf. The tighter bound wins on both ends, so `max_procs = 1` means one worker
    /// per exchange and stage whatever the orchestrator allows, and an orchestrator limit below
    /// the file's holds too; the lower bound never exceeds the upper.
    public static func effectiveBounds(deployment: ClosedRange<Int>, program: ClosedRange<Int>) -> ClosedRange<Int> {
        let upper = max(1, min(deployment.upperBound, program.upperBound))
        let lower = min(max(deployment.lowerBound, program.lowerBound), upper)
        return lower...upper
    }
}
