import Broker
import Deployments
import Foundation
import Logging

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

    /// One pass: heartbeat, expire dead supervisors, claim this supervisor's share of the
    /// deployments, scale each (and every global program with a queue) on its queue depth, stop
    /// what is no longer wanted or owned, release stopped deployments whose workers are gone, and
    /// write back what runs.
    func reconcile() async {
        let now = ContinuousClock.now
        guard let broker = brokerHandle else {
            return
        }
        do {
            let settings = configuration.supervisor
            var owned: [String: Deployment] = [:]
            if let store = deploymentStore {
                do {
                    try await store.heartbeat(id: identifier, lease: settings.leaseDuration, status: .running)
                } catch let error as DeploymentError where error.code == .leaseLost {
                    // Away longer than the lease (the database was unreachable, the host paused):
                    // other supervisors may own these deployments now, so their workers stop here
                    // before this supervisor registers again and claims a fresh share.
                    logger.warning("this supervisor's lease expired; stopping its per-exchange workers and registering again", metadata: [
                        "deployments": "\(ownedDeployments.count)",
                    ])
                    abandonDeployments()
                    try await store.register(identity(), lease: settings.leaseDuration)
                }
                let expired = try await store.expireDeadSupervisors()
                if !expired.isEmpty {
                    logger.warning("supervisors' leases expired; their deployments are free to take over", metadata: ["supervisors": "\(expired)"])
                }
                for deployment in try await store.claim(supervisorID: identifier, lease: settings.leaseDuration) {
                    owned[deployment.id] = deployment
                }
            }
            let names = Set(owned.values.map(\.queue)).union(configuration.programs.compactMap(\.queue))
            let counters = try await broker.counters(Array(names))
            for (queue, counter) in counters { metrics.queueDepth(queue: queue, visible: Int(counter.visible)) }

            // Global programs that scale on a queue.
            for program in configuration.programs where program.scope == .global && program.autostart {
                guard let queue = program.queue else { continue }
                let group = GroupKey(program: program.name, deploymentID: "")
                let visible = counters[queue].map { Int($0.visible) } ?? 0
                var scaler = autoscalers[group] ?? Autoscaler(window: settings.scaleDownWindow)
                let target = scaler.decide(visible: visible, messagesPerProc: program.messagesPerProc, min: program.minProcs, max: program.maxProcs, now: now)
                autoscalers[group] = scaler
                setTarget(group, program: program, deployment: nil, count: target)
            }

            // Deployments this supervisor owns.
            for deployment in owned.values.sorted(by: { $0.id < $1.id }) {
                let group = GroupKey(program: deployment.program, deploymentID: deployment.id)
                guard let program = configuration.program(named: deployment.program), program.scope == .perExchange else {
                    if ownedDeployments[deployment.id] == nil {
                        logger.error("deployment names a program that supervisor.conf has no per-exchange section for", metadata: [
                            "deploymentId": "\(deployment.id)", "program": "\(deployment.program)", "exchangeId": "\(deployment.exchangeID)",
                        ])
                    }
                    ownedDeployments[deployment.id] = deployment
                    continue
                }
                ownedDeployments[deployment.id] = deployment
                let target: Int
                if deployment.desiredState == .running {
                    let visible = counters[deployment.queue].map { Int($0.visible) } ?? 0
                    var scaler = autoscalers[group] ?? Autoscaler(window: settings.scaleDownWindow)
                    target = scaler.decide(
                        visible: visible, messagesPerProc: deployment.messagesPerProc ?? program.messagesPerProc,
                        min: deployment.minProcs, max: deployment.maxProcs, now: now
                    )
                    autoscalers[group] = scaler
                } else {
                    target = 0
                    autoscalers.removeValue(forKey: group)
                }
                setTarget(group, program: program, deployment: deployment, count: target)
            }

            // Deployments no longer owned (lease lost, row removed): stop their workers.
            for (id, deployment) in ownedDeployments where owned[id] == nil {
                logger.warning("deployment no longer owned by this supervisor; stopping its workers", metadata: [
                    "deploymentId": "\(id)", "exchangeId": "\(deployment.exchangeID)",
                ])
                let group = GroupKey(program: deployment.program, deploymentID: id)
                if let program = configuration.program(named: deployment.program) {
                    setTarget(group, program: program, deployment: deployment, count: 0)
                }
                groupTargets.removeValue(forKey: group)
                autoscalers.removeValue(forKey: group)
                ownedDeployments.removeValue(forKey: id)
            }

            try await report(owned: owned)
            lastReconcile = (ContinuousClock.now, nil)
        } catch {
            lastReconcile = (ContinuousClock.now, "\(error)")
            logger.error("deployment pass failed; retrying at the next pass", metadata: ["error": "\(error)"])
        }
    }

    /// Stops the workers of every deployment this supervisor held and forgets them.
    func abandonDeployments() {
        for (id, deployment) in ownedDeployments {
            let group = GroupKey(program: deployment.program, deploymentID: id)
            if let program = configuration.program(named: deployment.program) {
                setTarget(group, program: program, deployment: deployment, count: 0)
            }
            groupTargets.removeValue(forKey: group)
            autoscalers.removeValue(forKey: group)
        }
        ownedDeployments.removeAll()
    }

    /// Writes this supervisor's workers and per-deployment counts, and releases stopped
    /// deployments whose workers are all gone.
    func report(owned: [String: Deployment]) async throws {
        guard let store = deploymentStore else { return }
        let now = ContinuousClock.now
        var workers: [WorkerRecord] = []
        var running: [String: Int] = [:]
        for slot in slots.values {
            guard let pid = slot.machine.pid else { continue }
            if !slot.key.deploymentID.isEmpty { running[slot.key.deploymentID, default: 0] += 1 }
            workers.append(WorkerRecord(
                supervisorID: identifier, program: slot.key.program, instance: slot.key.instance,
                deploymentID: slot.key.deploymentID.isEmpty ? nil : slot.key.deploymentID, pid: pid,
                state: WorkerState(rawValue: slot.machine.stateName(now: now)),
                startedAt: slot.startedAt ?? Date(), restarts: slot.machine.restarts, lastExitStatus: slot.machine.lastExitStatus
            ))
        }
        var counts: [DeploymentCounts] = []
        for (id, deployment) in owned {
            let group = GroupKey(program: deployment.program, deploymentID: id)
            counts.append(DeploymentCounts(id: id, targetProcs: groupTargets[group] ?? 0, runningProcs: running[id] ?? 0))
        }
        try await store.report(supervisorID: identifier, deployments: counts, workers: workers)
        for (id, deployment) in owned where deployment.desiredState == .stopped {
            let alive = slots.keys.contains { $0.deploymentID == id }
            guard !alive else { continue }
            try await store.release(deploymentID: id, supervisorID: identifier)
            let group = GroupKey(program: deployment.program, deploymentID: id)
            groupTargets.removeValue(forKey: group)
            ownedDeployments.removeValue(forKey: id)
            logger.info("deployment stopped; released", metadata: ["deploymentId": "\(id)", "exchangeId": "\(deployment.exchangeID)"])
        }
    }

    /// SIGHUP: re-reads `supervisor.conf` and applies only the difference. A file that does not
    /// parse changes nothing.
    func reloadConfiguration() async {
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
        let old = configuration
        applyConfiguration(fresh)
        for name in changes.removed {
            for key in slots.keys where key.program == name { stopSlot(key, retire: true) }
            for group in groupTargets.keys where group.program == name { groupTargets.removeValue(forKey: group) }
        }
        for name in changes.restart {
            guard let program = fresh.program(named: name) else { continue }
            // Stop the old processes; the slots come back with the new settings once stopped.
            for key in slots.keys where key.program == name {
                replaceProgram(key, with: program, restart: true)
            }
        }
        for name in changes.rescale {
            guard let program = fresh.program(named: name) else { continue }
            for key in slots.keys where key.program == name { replaceProgram(key, with: program, restart: false) }
            if program.scope == .global, program.autostart {
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
        _ = old
        reconcileNow()
    }
}
