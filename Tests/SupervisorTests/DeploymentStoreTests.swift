import Broker
import DatabaseSupport
import Deployments
import ExchangerTestSupport
import Foundation
import Testing

/// A deployment spec of exchange `exchange` for `program`, with the usual id.
private func spec(
    _ exchange: String, _ program: String, min: Int = 0, max: Int = 4, messagesPerProc: Int? = nil, state: DesiredState = .running
) -> DeploymentSpec {
    DeploymentSpec(
        id: "\(exchange)/\(program)", exchangeID: exchange, program: program, queue: "q-\(exchange)-\(program)", minProcs: min,
        maxProcs: max, messagesPerProc: messagesPerProc, desiredState: state)
}

private func identity(_ id: String, status: SupervisorStatus = .running) -> SupervisorIdentity {
    SupervisorIdentity(id: id, hostname: "host-\(id)", pid: 4242, httpPort: 9300, status: status)
}

private func worker(
    _ supervisor: String, _ program: String, _ instance: Int, deployment: String?, pid: Int32? = 1000, state: WorkerState = .running
) -> WorkerRecord {
    WorkerRecord(
        supervisorID: supervisor, program: program, instance: instance, deploymentID: deployment, pid: pid, state: state,
        startedAt: Date(timeIntervalSince1970: 1_700_000_000.123), restarts: 0)
}

/// `count` running deployments e0/p…, created one after another (oldest first).
@discardableResult
private func makeDeployments(_ store: DeploymentStore, count: Int, exchange: String = "e0") async throws -> [String] {
    var ids: [String] = []
    for index in 0..<count { ids.append(try await store.upsert(spec(exchange, "p\(index)")).id) }
    return ids
}

/// Runs `body` and returns its error as a `DeploymentError` code (nil when it did not throw one).
private func deploymentErrorCode(_ body: () async throws -> Void) async -> DeploymentError.Code? {
    do {
        try await body()
        return nil
    } catch let error as DeploymentError {
        return error.code
    } catch {
        Issue.record("expected a DeploymentError, got \(error)")
        return nil
    }
}

/// Waits until the broker's PostgreSQL listener is up: a wait that is not cut short by the
/// listener's "(re)connected, wake everyone" signal lasts its whole timeout.
private func warmUpNotifications(_ broker: Broker, _ name: String) async throws {
    for _ in 0..<20 {
        let started = ContinuousClock.now
        try await broker.waitForNotification(name, timeout: .milliseconds(300))
        if ContinuousClock.now - started >= .milliseconds(280) { return }
    }
    Issue.record("notification waits kept returning early")
}

/// Connects a second broker to the same database: another connection pool and listener, as
/// another process would have.
private func withSecondBroker<T: Sendable>(_ url: String, _ body: (Broker) async throws -> T) async throws -> T {
    let other = try await Broker.connect(url: url)
    do {
        let result = try await body(other)
        await other.close()
        return result
    } catch {
        await other.close()
        throw error
    }
}

@Suite("Deployment store")
struct DeploymentStoreTests {
    // MARK: Schema

    @Test("exchanger migrate applies version 3 on a fresh database and on one at version 2", arguments: Backend.allCases)
    func migration(backend: Backend) async throws {
        try await withTestDatabase(backend, migrate: false) { url in
            let first = try await runExchanger(["migrate", "--database", url])
            #expect(first.status == 0)
            #expect(first.output.contains("applied migrations: 1, 2, 3"), "\(first.output)")
            // The newest version this build knows (later migrations may follow 3).
            let newest = Int(first.output.split(separator: "\n").first { $0.contains("applied migrations:") }?
                .split(separator: ",").last?.trimmingCharacters(in: .whitespaces) ?? "") ?? 3
            let again = try await runExchanger(["migrate", "--database", url])
            #expect(again.status == 0)
            #expect(again.output.contains("schema is up to date"), "\(again.output)")

            // Back to version 2, as a database migrated by the build before migration 3: migrate
            // applies 3 (and whatever came after it).
            let broker = try await Broker.connect(url: url)
            try await broker.transaction { tx in
                // Migrations 4–6 (the orchestrator's tables, worker presence) refer to nothing of 3, but go too.
                for table in ["exchange_resources", "exchanges", "exchanger_worker_presence"] {
                    try await tx.query("DROP TABLE IF EXISTS \(table)")
                }
                for table in ["exchanger_deployments", "exchanger_supervisors", "exchanger_workers"] {
                    try await tx.query("DROP TABLE \(table)")
                }
                if tx.dialect == .sqlite { try await tx.query("DROP TABLE broker_notifications") }
                try await tx.query("DELETE FROM exchanger_migrations WHERE version >= 3")
            }
            #expect(try await broker.schemaVersion() == 2)
            await broker.close()
            let upgrade = try await runExchanger(["migrate", "--database", url])
            #expect(upgrade.status == 0)
            #expect(upgrade.output.contains("applied migrations: 3"), "\(upgrade.output)")

            let migrated = try await Broker.connect(url: url)
            #expect(try await migrated.schemaVersion() == newest)
            let store = DeploymentStore(broker: migrated)
            #expect(try await store.deployments().isEmpty)
            #expect(try await store.supervisors().isEmpty)
            #expect(try await store.workers().isEmpty)
            // The constraints of the schema itself, below the store's validation.
            await #expect(throws: BrokerError.self) {
                try await migrated.transaction { tx in
                    let now = tx.dialect == .postgres ? "now()" : "0"
                    try await tx.query("""
                        INSERT INTO exchanger_deployments (id, exchange_id, program, queue, min_procs, max_procs, desired_state,
                            created_at, updated_at)
                        VALUES ('x', 'e', 'p', 'q', 3, 2, 'running', \(now), \(now))
                        """)
                }
            }
            await #expect(throws: BrokerError.self) {
                try await migrated.transaction { tx in
                    let now = tx.dialect == .postgres ? "now()" : "0"
                    try await tx.query("""
                        INSERT INTO exchanger_deployments (id, exchange_id, program, queue, min_procs, max_procs, desired_state,
                            created_at, updated_at)
                        VALUES ('x', 'e', 'p', 'q', 0, 2, 'paused', \(now), \(now))
                        """)
                }
            }
            await migrated.close()
        }
    }

    // MARK: Worker presence

    @Test("worker presence: announce, renew, list, expire, forget, withdraw", arguments: Backend.allCases)
    func presence(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, url in
            let store = DeploymentStore(broker: broker)
            let bound = WorkerPresence(
                id: "host-a:10:1", hostname: "host-a", pid: 10, program: "s3-copy", queue: "exch-1-s3-copy", supervisorID: "sup-a",
                deploymentID: "exch-1-s3-copy")
            let unbound = WorkerPresence(id: "host-b:20:2", hostname: "host-b", pid: 20, program: "s3-copy")
            try await store.announce(bound, ttl: .seconds(30))
            try await store.announce(unbound, ttl: .milliseconds(300))
            let listed = try await store.presences()
            #expect(listed.map(\.id) == ["host-a:10:1", "host-b:20:2"])
            #expect(listed.first?.supervisorID == "sup-a" && listed.first?.queue == "exch-1-s3-copy" && listed.first?.pid == 10)
            #expect(listed.last?.supervisorID == nil && listed.last?.deploymentID == nil && listed.last?.isLive == true)

            // A row not renewed expires: gone from the list, still there with includeStale.
            try await Task.sleep(for: .milliseconds(600))
            #expect(try await store.presences().map(\.id) == ["host-a:10:1"])
            #expect(try await store.presences(includeStale: true).first { $0.id == "host-b:20:2" }?.isLive == false)
            // `exchanger ps` still shows it, as unreachable: its host may be cut off with the worker running.
            let (psStatus, ps) = try await runExchanger(["ps", "--database", url])
            #expect(psStatus == 0)
            #expect(ps.split(separator: "\n").contains { $0.contains("host-b") && $0.contains("unreachable (presence expired at") }, "\(ps)")
            #expect(ps.split(separator: "\n").contains { $0.contains("host-a") && $0.hasSuffix("running") }, "\(ps)")
            // Renewal brings it back; a row that was forgotten cannot be renewed.
            #expect(try await store.renewPresence(id: "host-b:20:2", ttl: .seconds(30)))
            #expect(try await store.presences().count == 2)
            #expect(try await store.renewPresence(id: "never-announced", ttl: .seconds(30)) == false)
            // An announce forgets rows expired longer than forgetAfter.
            try await store.announce(WorkerPresence(id: "host-c:30:3", hostname: "host-c", pid: 30, program: "uploader"), ttl: .milliseconds(100))
            try await Task.sleep(for: .milliseconds(300))
            try await store.announce(bound, ttl: .seconds(30), forgetAfter: .milliseconds(100))
            #expect(try await store.presences(includeStale: true).map(\.id) == ["host-a:10:1", "host-b:20:2"])
            try await store.withdrawPresence(id: "host-a:10:1")
            #expect(try await store.presences().map(\.id) == ["host-b:20:2"])
            // A supervisor forgets the expired rows of its own workers whose process is gone, and
            // only those.
            try await store.announce(WorkerPresence(id: "host-a:11:4", hostname: "host-a", pid: 11, program: "s3-copy", supervisorID: "sup-a"), ttl: .milliseconds(100))
            try await store.announce(WorkerPresence(id: "host-a:12:5", hostname: "host-a", pid: 12, program: "s3-copy", supervisorID: "sup-a"), ttl: .milliseconds(100))
            try await store.announce(WorkerPresence(id: "host-a:13:6", hostname: "host-a", pid: 13, program: "s3-copy", supervisorID: "sup-a"), ttl: .seconds(30))
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await store.forgetStalePresences(supervisorID: "sup-a", runningPIDs: [12, 13]) == 1, "pid 11: expired and not running")
            #expect(try await store.presences(includeStale: true).map(\.id).sorted() == ["host-a:12:5", "host-a:13:6", "host-b:20:2"])
            await #expect(throws: DeploymentError.self) { try await store.announce(WorkerPresence(id: "", hostname: "h", pid: 1, program: "p"), ttl: .seconds(1)) }
        }
    }

    // MARK: Orchestrator side

    @Test("upsert inserts, re-upserting the same spec changes nothing, a new spec updates", arguments: Backend.allCases)
    func upsert(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            let store = DeploymentStore(broker: broker)
            let created = try await store.upsert(spec("ex1", "s3-copy", min: 1, max: 4))
            #expect(created.spec == spec("ex1", "s3-copy", min: 1, max: 4))
            #expect(created.owner == nil && created.leaseExpiresAt == nil)
            #expect(created.targetProcs == 0 && created.runningProcs == 0)

            try await Task.sleep(for: .milliseconds(20))
            try await warmUpNotifications(broker, DeploymentStore.deploymentsNotification)
            let mark = try await store.changeMark()
            let same = try await store.upsert(spec("ex1", "s3-copy", min: 1, max: 4))
            #expect(same == created, "an identical spec is a no-op")
            // …and notifies nobody.
            let started = ContinuousClock.now
            try await store.waitForChange(after: mark, timeout: .milliseconds(400))
            #expect(ContinuousClock.now - started >= .milliseconds(380))

            let updated = try await store.upsert(spec("ex1", "s3-copy", min: 2, max: 8, messagesPerProc: 50, state: .stopped))
            #expect(updated.minProcs == 2 && updated.maxProcs == 8 && updated.messagesPerProc == 50)
            #expect(updated.desiredState == .stopped)
            #expect(updated.createdAt == created.createdAt)
            #expect(updated.updatedAt > created.updatedAt)
            #expect(try await store.deployment(id: "ex1/s3-copy") == updated)

            // Back to running, default messages per proc.
            let running = try await store.upsert(spec("ex1", "s3-copy", min: 2, max: 8))
            #expect(running.desiredState == .running && running.messagesPerProc == nil)

            try await store.upsert(spec("ex1", "uploader"))
            try await store.upsert(spec("ex2", "s3-copy"))
            #expect(try await store.deployments().map(\.id) == ["ex1/s3-copy", "ex1/uploader", "ex2/s3-copy"])
            #expect(try await store.deployments(exchangeID: "ex1").map(\.id) == ["ex1/s3-copy", "ex1/uploader"])
            #expect(try await store.deployments(exchangeID: "nope").isEmpty)
            #expect(try await store.deployment(id: "nope") == nil)
        }
    }

    @Test("upsert refuses bad specs and conflicting ids without writing", arguments: Backend.allCases)
    func upsertValidation(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            let store = DeploymentStore(broker: broker)
            let bad: [DeploymentSpec] = [
                spec("ex1", "p", min: 3, max: 2),
                spec("ex1", "p", min: -1, max: 2),
                spec("ex1", "p", min: 0, max: DeploymentSpec.maxProcsLimit + 1),
                spec("ex1", "p", messagesPerProc: 0),
                DeploymentSpec(id: "", exchangeID: "ex1", program: "p", queue: "q", minProcs: 0, maxProcs: 1),
                DeploymentSpec(id: "d", exchangeID: "", program: "p", queue: "q", minProcs: 0, maxProcs: 1),
                DeploymentSpec(id: "d", exchangeID: "ex1", program: "", queue: "q", minProcs: 0, maxProcs: 1),
                DeploymentSpec(id: "d", exchangeID: "ex1", program: "p", queue: "", minProcs: 0, maxProcs: 1),
                DeploymentSpec(id: "d", exchangeID: "ex1", program: "has space", queue: "q", minProcs: 0, maxProcs: 1),
                DeploymentSpec(id: "d", exchangeID: "ex1", program: "p", queue: "q/x", minProcs: 0, maxProcs: 1),
                DeploymentSpec(id: "d\n", exchangeID: "ex1", program: "p", queue: "q", minProcs: 0, maxProcs: 1),
                DeploymentSpec(id: String(repeating: "d", count: 201), exchangeID: "ex1", program: "p", queue: "q", minProcs: 0, maxProcs: 1),
            ]
            for spec in bad {
                #expect(await deploymentErrorCode { try await store.upsert(spec) } == .invalidArgument, "\(spec)")
            }
            #expect(try await store.deployments().isEmpty)

            try await store.upsert(spec("ex1", "p"))
            var moved = spec("ex1", "p")
            moved.queue = "another-queue"
            #expect(await deploymentErrorCode { try await store.upsert(moved) } == .conflict)
            var otherExchange = spec("ex1", "p")
            otherExchange.exchangeID = "ex2"
            #expect(await deploymentErrorCode { try await store.upsert(otherExchange) } == .conflict)
            var sameProgramOtherID = spec("ex1", "p")
            sameProgramOtherID.id = "ex1/p-again"
            #expect(await deploymentErrorCode { try await store.upsert(sameProgramOtherID) } == .conflict)
            #expect(try await store.deployments().map(\.spec) == [spec("ex1", "p")])
        }
    }

    // MARK: Claims

    @Test("claim splits 10 deployments fairly among 1, 2 and 3 supervisors", arguments: Backend.allCases)
    func fairShare(backend: Backend) async throws {
        let expected: [Int: [Int]] = [1: [10], 2: [5, 5], 3: [4, 4, 2]]
        for (supervisors, shares) in expected.sorted(by: { $0.key < $1.key }) {
            try await withTestBroker(backend) { broker, _ in
                let store = DeploymentStore(broker: broker)
                let ids = try await makeDeployments(store, count: 10)
                // Neither a stopped deployment with nothing running needs an owner…
                try await store.upsert(spec("e1", "idle", state: .stopped))
                let names = (0..<supervisors).map { "sup-\($0)" }
                for name in names { try await store.register(identity(name), lease: .seconds(30)) }
                var owned: [String: [String]] = [:]
                for name in names { owned[name] = try await store.claim(supervisorID: name, lease: .seconds(30)).map(\.id) }
                #expect(names.map { owned[$0]?.count ?? -1 } == shares, "\(supervisors) supervisors")
                // Oldest first: the first claimer has the oldest deployments.
                #expect(owned["sup-0"] == Array(ids.prefix(shares[0])))
                let all = names.flatMap { owned[$0] ?? [] }
                #expect(Set(all).count == all.count, "no deployment has two owners")
                #expect(Set(all) == Set(ids))
                // Another round renews and changes nothing.
                for name in names {
                    #expect(try await store.claim(supervisorID: name, lease: .seconds(30)).map(\.id) == owned[name])
                }
                for deployment in try await store.deployments() where deployment.id != "e1/idle" {
                    #expect(deployment.leaseExpiresAt.map { $0 > Date() } == true)
                    #expect(names.contains(deployment.owner ?? ""))
                }
                #expect(try await store.deployment(id: "e1/idle")?.owner == nil)
            }
        }
    }

    @Test("a draining supervisor claims nothing new; a stopped deployment with running workers still needs an owner",
        arguments: Backend.allCases)
    func drainingAndStopped(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            let store = DeploymentStore(broker: broker)
            try await makeDeployments(store, count: 2)
            try await store.register(identity("drainer", status: .draining), lease: .seconds(30))
            #expect(try await store.claim(supervisorID: "drainer", lease: .seconds(30)).isEmpty)
            try await store.register(identity("a"), lease: .seconds(30))
            #expect(try await store.claim(supervisorID: "a", lease: .seconds(30)).count == 1, "share ⌈2 ÷ 2⌉")
            try await store.heartbeat(id: "drainer", lease: .seconds(30), status: .running)
            #expect(try await store.claim(supervisorID: "drainer", lease: .seconds(30)).map(\.id) == ["e0/p1"])

            // Stopped, but its owner still reports a running worker: it is kept and returned.
            try await store.requestStop(id: "e0/p1")
            try await store.report(supervisorID: "drainer", deployments: [DeploymentCounts(id: "e0/p1", targetProcs: 0, runningProcs: 1)],
                workers: [worker("drainer", "p1", 0, deployment: "e0/p1", state: .stopping)])
            let kept = try await store.claim(supervisorID: "drainer", lease: .seconds(30))
            #expect(kept.map(\.id) == ["e0/p1"] && kept.first?.desiredState == .stopped)
            // Workers gone: it releases the deployment, which nobody claims any more.
            try await store.report(supervisorID: "drainer", deployments: [DeploymentCounts(id: "e0/p1", targetProcs: 0, runningProcs: 0)],
                workers: [])
            #expect(try await store.release(deploymentID: "e0/p1", supervisorID: "drainer"))
            #expect(try await !store.release(deploymentID: "e0/p1", supervisorID: "drainer"))
            #expect(try await store.claim(supervisorID: "drainer", lease: .seconds(30)).isEmpty)
            #expect(try await store.claim(supervisorID: "a", lease: .seconds(30)).map(\.id) == ["e0/p0"])
        }
    }

    @Test("concurrent claims from two broker instances never give one deployment two owners (PostgreSQL, many rounds)")
    func concurrentClaims() async throws {
        try await withTestBroker(.postgres) { broker, url in
            try await withSecondBroker(url) { other in
                let stores = [DeploymentStore(broker: broker), DeploymentStore(broker: other)]
                let ids = try await makeDeployments(stores[0], count: 20)
                // Four supervisors, two on each broker instance (connection pool).
                let supervisors = (0..<4).map { (name: "sup-\($0)", store: stores[$0 % 2]) }
                for supervisor in supervisors { try await supervisor.store.register(identity(supervisor.name), lease: .seconds(60)) }
                for round in 0..<100 {
                    // Everything unowned again.
                    _ = try await broker.transaction { tx in
                        try await tx.query("UPDATE exchanger_deployments SET owner = NULL, lease_expires_at = NULL")
                    }
                    let claimed = try await withThrowingTaskGroup(of: (String, [String]).self) { group in
                        for supervisor in supervisors {
                            group.addTask {
                                (supervisor.name, try await supervisor.store.claim(supervisorID: supervisor.name, lease: .seconds(60)).map(\.id))
                            }
                        }
                        var result: [String: [String]] = [:]
                        for try await (name, owned) in group { result[name] = owned }
                        return result
                    }
                    let all = claimed.values.flatMap { $0 }
                    #expect(Set(all).count == all.count, "round \(round): a deployment was claimed twice: \(claimed)")
                    #expect(claimed.values.allSatisfy { $0.count <= 5 }, "round \(round): more than the fair share: \(claimed)")
                    // What each was told matches the rows.
                    for deployment in try await stores[1].deployments() {
                        if let owner = deployment.owner {
                            #expect(claimed[owner]?.contains(deployment.id) == true, "round \(round)")
                        } else {
                            #expect(!all.contains(deployment.id))
                        }
                    }
                    // A second, sequential pass places whatever a skipped lock left over.
                    for supervisor in supervisors { _ = try await supervisor.store.claim(supervisorID: supervisor.name, lease: .seconds(60)) }
                    let owners = try await stores[0].deployments().map(\.owner)
                    #expect(owners.allSatisfy { $0 != nil } && owners.count == ids.count, "round \(round)")
                }
            }
        }
    }

    @Test("a dead supervisor's deployments are taken over after its lease expires, never before", arguments: Backend.allCases)
    func takeover(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            let store = DeploymentStore(broker: broker)
            let ids = try await makeDeployments(store, count: 4)
            try await store.register(identity("doomed"), lease: .seconds(30))
            #expect(try await store.claim(supervisorID: "doomed", lease: .seconds(30)).map(\.id) == ids)
            try await store.register(identity("heir"), lease: .seconds(30))
            #expect(try await store.claim(supervisorID: "heir", lease: .seconds(30)).isEmpty, "live leases are never taken")

            // "doomed" renews one last time with short leases, then stops (killed): once they pass,
            // "heir" takes everything.
            #expect(try await store.claim(supervisorID: "doomed", lease: .milliseconds(100)).count == 4)
            try await store.heartbeat(id: "doomed", lease: .milliseconds(100))
            try await Task.sleep(for: .milliseconds(400))
            #expect(try await store.claim(supervisorID: "heir", lease: .seconds(30)).map(\.id) == ids)
            #expect(try await store.deployments().allSatisfy { $0.owner == "heir" })
            #expect(try await store.supervisors().map { "\($0.id):\($0.isLive)" } == ["doomed:false", "heir:true"])

            // The dead one finds out, and cannot write.
            #expect(await deploymentErrorCode { try await store.heartbeat(id: "doomed", lease: .seconds(1)) } == .leaseLost)
            #expect(await deploymentErrorCode { _ = try await store.claim(supervisorID: "doomed", lease: .seconds(1)) } == .leaseLost)
            #expect(await deploymentErrorCode { _ = try await store.claim(supervisorID: "never-registered", lease: .seconds(1)) } == .leaseLost)
            #expect(try await !store.release(deploymentID: ids[0], supervisorID: "doomed"))

            #expect(try await store.expireDeadSupervisors(grace: .seconds(60)).isEmpty, "not dead for long enough")
            #expect(try await store.expireDeadSupervisors() == ["doomed"])
            #expect(try await store.supervisors().map(\.id) == ["heir"])
            // Registering again is the way back.
            try await store.register(identity("doomed"), lease: .seconds(30))
            try await store.heartbeat(id: "doomed", lease: .seconds(30))
            #expect(try await store.claim(supervisorID: "doomed", lease: .seconds(30)).isEmpty)
        }
    }

    @Test("expireDeadSupervisors deletes the dead supervisors' rows and frees their deployments at once", arguments: Backend.allCases)
    func expire(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            let store = DeploymentStore(broker: broker)
            let ids = try await makeDeployments(store, count: 2)
            try await store.register(identity("dead"), lease: .seconds(30))
            // A long deployment lease: only expiring the supervisor frees it early.
            #expect(try await store.claim(supervisorID: "dead", lease: .seconds(600)).map(\.id) == ids)
            try await store.report(supervisorID: "dead", deployments: [], workers: [worker("dead", "p0", 0, deployment: ids[0])])
            try await store.register(identity("alive"), lease: .seconds(30))
            try await store.heartbeat(id: "dead", lease: .milliseconds(100))
            try await Task.sleep(for: .milliseconds(400))
            #expect(try await store.claim(supervisorID: "alive", lease: .seconds(30)).isEmpty)
            #expect(try await store.expireDeadSupervisors() == ["dead"])
            #expect(try await store.workers().isEmpty)
            #expect(try await store.deployments().allSatisfy { $0.owner == nil && $0.leaseExpiresAt == nil })
            #expect(try await store.claim(supervisorID: "alive", lease: .seconds(30)).map(\.id) == ids)
            #expect(try await store.expireDeadSupervisors().isEmpty)
        }
    }

    // MARK: Reports and workers

    @Test("report replaces the supervisor's worker rows and refuses after its lease is lost", arguments: Backend.allCases)
    func report(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            let store = DeploymentStore(broker: broker)
            let ids = try await makeDeployments(store, count: 2)
            try await store.register(identity("a"), lease: .seconds(30))
            try await store.register(identity("b"), lease: .seconds(30))
            #expect(try await store.claim(supervisorID: "a", lease: .seconds(30)).map(\.id) == [ids[0]])
            #expect(try await store.claim(supervisorID: "b", lease: .seconds(30)).map(\.id) == [ids[1]])
            try await store.report(supervisorID: "b", deployments: [], workers: [worker("b", "dlq", 0, deployment: nil)])

            let first = [
                worker("a", "p0", 0, deployment: ids[0], pid: 101),
                worker("a", "p0", 1, deployment: ids[0], pid: 102, state: .starting),
                worker("a", "dlq", 0, deployment: nil, pid: 103),
            ]
            let notOwned = try await store.report(supervisorID: "a",
                deployments: [DeploymentCounts(id: ids[0], targetProcs: 2, runningProcs: 2), DeploymentCounts(id: ids[1], targetProcs: 9, runningProcs: 9)],
                workers: first)
            #expect(notOwned == [ids[1]])
            let stored = try await store.workers(supervisorID: "a")
            #expect(Set(stored.map { "\($0.program)#\($0.instance)@\($0.deploymentID ?? "-"):\($0.pid ?? 0):\($0.state)" })
                == ["p0#0@e0/p0:101:RUNNING", "p0#1@e0/p0:102:STARTING", "dlq#0@-:103:RUNNING"])
            #expect(stored.allSatisfy { $0.startedAt == Date(timeIntervalSince1970: 1_700_000_000.123) && $0.updatedAt != nil })
            #expect(try await store.deployment(id: ids[0]).map { [$0.targetProcs, $0.runningProcs] } == [2, 2])
            #expect(try await store.deployment(id: ids[1]).map { [$0.targetProcs, $0.runningProcs] } == [0, 0], "not a's to report")

            // The second report is the whole truth: p0#1 is gone, p0#0 crashed and restarted, p0#2 is new.
            var restarted = worker("a", "p0", 0, deployment: ids[0], pid: 201)
            restarted.restarts = 1
            restarted.lastExitStatus = -9
            let second = [restarted, worker("a", "p0", 2, deployment: ids[0], pid: 202), worker("a", "dlq", 0, deployment: nil, pid: 103)]
            #expect(try await store.report(supervisorID: "a", deployments: [DeploymentCounts(id: ids[0], targetProcs: 3, runningProcs: 2)],
                workers: second).isEmpty)
            let replaced = try await store.workers(supervisorID: "a")
            #expect(Set(replaced.map { "\($0.program)#\($0.instance):\($0.pid ?? 0):\($0.restarts):\($0.lastExitStatus ?? 0)" })
                == ["p0#0:201:1:-9", "p0#2:202:0:0", "dlq#0:103:0:0"])
            #expect(try await store.deployment(id: ids[0]).map { [$0.targetProcs, $0.runningProcs] } == [3, 2])
            #expect(try await store.workers(supervisorID: "b").count == 1, "another supervisor's rows are untouched")
            #expect(try await store.workers().count == 4)

            // Bad reports are refused whole.
            #expect(await deploymentErrorCode {
                try await store.report(supervisorID: "a", deployments: [], workers: [worker("b", "p0", 0, deployment: ids[0])])
            } == .invalidArgument)
            #expect(await deploymentErrorCode {
                try await store.report(supervisorID: "a", deployments: [], workers: [second[0], second[0]])
            } == .invalidArgument)
            #expect(await deploymentErrorCode {
                try await store.report(supervisorID: "a", deployments: [DeploymentCounts(id: ids[0], targetProcs: -1, runningProcs: 0)], workers: [])
            } == .invalidArgument)

            // a's lease runs out: nothing it reports is written any more.
            try await store.heartbeat(id: "a", lease: .milliseconds(100))
            try await Task.sleep(for: .milliseconds(400))
            #expect(await deploymentErrorCode {
                try await store.report(supervisorID: "a", deployments: [DeploymentCounts(id: ids[0], targetProcs: 0, runningProcs: 0)], workers: [])
            } == .leaseLost)
            #expect(try await store.workers(supervisorID: "a").count == 3)
            #expect(try await store.deployment(id: ids[0]).map { [$0.targetProcs, $0.runningProcs] } == [3, 2])
            #expect(await deploymentErrorCode {
                try await store.report(supervisorID: "nobody", deployments: [], workers: [])
            } == .leaseLost)
        }
    }

    @Test("liveWorkers counts only live supervisors' workers that have or will have a process", arguments: Backend.allCases)
    func liveWorkers(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            let store = DeploymentStore(broker: broker)
            try await store.upsert(spec("ex1", "s3-copy"))
            try await store.upsert(spec("ex1", "uploader"))
            try await store.upsert(spec("ex2", "s3-copy"))
            try await store.register(identity("short"), lease: .seconds(30))
            try await store.register(identity("long"), lease: .seconds(30))
            try await store.report(supervisorID: "short", deployments: [], workers: [
                worker("short", "s3-copy", 0, deployment: "ex1/s3-copy", pid: 11),
            ])
            try await store.report(supervisorID: "long", deployments: [], workers: [
                worker("long", "s3-copy", 0, deployment: "ex1/s3-copy", pid: 21),
                worker("long", "s3-copy", 1, deployment: "ex1/s3-copy", pid: nil, state: .backoff),
                worker("long", "s3-copy", 2, deployment: "ex1/s3-copy", pid: nil, state: .exited),
                worker("long", "s3-copy", 3, deployment: "ex1/s3-copy", pid: nil, state: .failed),
                worker("long", "uploader", 0, deployment: "ex1/uploader", pid: 22, state: .stopping),
                worker("long", "uploader", 1, deployment: "ex1/uploader", pid: nil, state: .stopped),
                worker("long", "s3-copy", 0, deployment: "ex2/s3-copy", pid: 23),
                worker("long", "dlq", 0, deployment: nil, pid: 24),
            ])
            func pids(_ workers: [WorkerRecord]) -> Set<Int32> { Set(workers.map { $0.pid ?? 0 }) }
            #expect(pids(try await store.liveWorkers(deploymentID: "ex1/s3-copy")) == [11, 21, 0])
            #expect(pids(try await store.liveWorkers(exchangeID: "ex1")) == [11, 21, 0, 22])
            #expect(pids(try await store.liveWorkers(exchangeID: "ex2")) == [23])
            #expect(pids(try await store.liveWorkers()) == [11, 21, 0, 22, 23, 24])
            #expect(try await store.liveWorkers(exchangeID: "ex9").isEmpty)

            // "short" was killed (SIGKILL: no deregistration) just after its last heartbeat; its workers died with it.
            try await store.heartbeat(id: "short", lease: .milliseconds(100))
            try await Task.sleep(for: .milliseconds(400))
            #expect(pids(try await store.liveWorkers(deploymentID: "ex1/s3-copy")) == [21, 0])
            #expect(try await store.workers(supervisorID: "short").count == 1, "the row stays until the supervisor is expired")
        }
    }

    @Test("requestStop, then remove refuses while a worker lives and deletes once none does", arguments: Backend.allCases)
    func stopAndRemove(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            let store = DeploymentStore(broker: broker)
            try await store.upsert(spec("ex1", "s3-copy"))
            try await store.upsert(spec("ex1", "uploader"))
            try await store.upsert(spec("ex2", "s3-copy"))
            try await store.register(identity("a"), lease: .seconds(30))
            #expect(try await store.claim(supervisorID: "a", lease: .seconds(30)).count == 3)
            try await store.report(supervisorID: "a", deployments: [DeploymentCounts(id: "ex1/s3-copy", targetProcs: 1, runningProcs: 1)],
                workers: [worker("a", "s3-copy", 0, deployment: "ex1/s3-copy")])

            #expect(try await store.requestStop(id: "ex1/s3-copy"))
            #expect(try await store.requestStop(id: "ex1/s3-copy"), "again: still there, still stopped")
            #expect(try await !store.requestStop(id: "ex9/none"))
            #expect(try await store.requestStop(exchangeID: "ex1") == ["ex1/s3-copy", "ex1/uploader"])
            #expect(try await store.requestStop(exchangeID: "ex9").isEmpty)
            #expect(try await store.deployments(exchangeID: "ex1").allSatisfy { $0.desiredState == .stopped })
            #expect(try await store.deployment(id: "ex2/s3-copy")?.desiredState == .running)

            #expect(await deploymentErrorCode { try await store.remove(id: "ex1/s3-copy") } == .workersRunning)
            #expect(await deploymentErrorCode { try await store.remove(exchangeID: "ex1") } == .workersRunning)
            #expect(try await store.deployments(exchangeID: "ex1").count == 2, "all or nothing")
            #expect(try await store.remove(id: "ex1/uploader"), "no worker of its own")
            #expect(try await !store.waitUntilNoWorkers(exchangeID: "ex1", timeout: .milliseconds(300)))

            // The worker exits (STOPPING, then gone).
            try await store.report(supervisorID: "a", deployments: [], workers: [worker("a", "s3-copy", 0, deployment: "ex1/s3-copy", state: .stopping)])
            #expect(await deploymentErrorCode { try await store.remove(id: "ex1/s3-copy") } == .workersRunning)
            try await store.report(supervisorID: "a", deployments: [DeploymentCounts(id: "ex1/s3-copy", targetProcs: 0, runningProcs: 0)],
                workers: [worker("a", "s3-copy", 0, deployment: "ex1/s3-copy", pid: nil, state: .exited)])
            #expect(try await store.waitUntilNoWorkers(exchangeID: "ex1", timeout: .seconds(5)))
            #expect(try await store.remove(exchangeID: "ex1") == ["ex1/s3-copy"])
            #expect(try await store.remove(exchangeID: "ex1").isEmpty)
            #expect(try await !store.remove(id: "ex1/s3-copy"))
            #expect(try await store.deployments().map(\.id) == ["ex2/s3-copy"])
        }
    }

    @Test("deregister deletes the supervisor's rows and hands its deployments over at once", arguments: Backend.allCases)
    func deregister(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            let store = DeploymentStore(broker: broker)
            let ids = try await makeDeployments(store, count: 3)
            try await store.register(identity("leaving"), lease: .seconds(30))
            try await store.register(identity("staying"), lease: .seconds(30))
            #expect(try await store.claim(supervisorID: "leaving", lease: .seconds(30)).count == 2)
            try await store.report(supervisorID: "leaving", deployments: [], workers: [worker("leaving", "p0", 0, deployment: ids[0])])
            let record = try #require(try await store.supervisors().first { $0.id == "leaving" })
            #expect(record.hostname == "host-leaving" && record.pid == 4242 && record.httpPort == 9300 && record.status == .running)
            #expect(record.isLive && record.leaseExpiresAt > record.heartbeatAt)

            try await store.heartbeat(id: "leaving", lease: .seconds(30), status: .draining)
            #expect(try await store.supervisors().first { $0.id == "leaving" }?.status == .draining)
            try await store.deregister(id: "leaving")
            #expect(try await store.supervisors().map(\.id) == ["staying"])
            #expect(try await store.workers().isEmpty)
            #expect(try await store.liveWorkers(exchangeID: "e0").isEmpty)
            #expect(try await store.claim(supervisorID: "staying", lease: .seconds(30)).map(\.id) == ids)
            #expect(await deploymentErrorCode { try await store.heartbeat(id: "leaving", lease: .seconds(30)) } == .leaseLost)
            try await store.deregister(id: "leaving")  // twice is fine
        }
    }

    @Test("register starts afresh: worker rows of an earlier run under the same id are dropped", arguments: Backend.allCases)
    func reRegister(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            let store = DeploymentStore(broker: broker)
            try await store.register(identity("sup"), lease: .seconds(30))
            try await store.report(supervisorID: "sup", deployments: [], workers: [worker("sup", "dlq", 0, deployment: nil)])
            try await store.register(SupervisorIdentity(id: "sup", hostname: "elsewhere", pid: 7), lease: .seconds(30))
            #expect(try await store.workers().isEmpty)
            #expect(try await store.supervisors().map { "\($0.hostname):\($0.pid):\($0.httpPort ?? 0)" } == ["elsewhere:7:0"])
            #expect(await deploymentErrorCode { try await store.register(identity(""), lease: .seconds(30)) } == .invalidArgument)
            #expect(await deploymentErrorCode { try await store.register(identity("x"), lease: .milliseconds(10)) } == .invalidArgument)
        }
    }

    // MARK: Notifications

    @Test("waitForChange wakes on a deployment write from another broker instance, not on other writes", arguments: Backend.allCases)
    func wakeUp(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, url in
            try await withSecondBroker(url) { other in
                let waiting = DeploymentStore(broker: broker)
                let writing = DeploymentStore(broker: other)
                try await other.createQueue("busy")
                try await warmUpNotifications(broker, DeploymentStore.deploymentsNotification)

                // Unrelated writes (a message, worker rows) do not wake a deployment waiter.
                let quiet = Task {
                    let started = ContinuousClock.now
                    try await waiting.waitForChange(timeout: .milliseconds(800))
                    return ContinuousClock.now - started
                }
                try await Task.sleep(for: .milliseconds(100))
                try await other.send("busy", OutgoingMessage(body: "hello"))
                try await writing.register(identity("sup"), lease: .seconds(30))
                try await writing.report(supervisorID: "sup", deployments: [], workers: [worker("sup", "dlq", 0, deployment: nil)])
                #expect(try await quiet.value >= .milliseconds(780))

                // A deployment write does, long before the timeout.
                for round in 0..<3 {
                    let mark = try await waiting.changeMark()
                    let waiter = Task {
                        let started = ContinuousClock.now
                        try await waiting.waitForChange(after: mark, timeout: .seconds(20))
                        return ContinuousClock.now - started
                    }
                    try await Task.sleep(for: .milliseconds(200))
                    switch round {
                    case 0: try await writing.upsert(spec("ex1", "s3-copy"))
                    case 1: try await writing.requestStop(exchangeID: "ex1")
                    default: try await writing.remove(id: "ex1/s3-copy")
                    }
                    let waited = try await waiter.value
                    #expect(waited < .seconds(2), "round \(round): woke after \(waited)")
                }

                // A change made between taking the mark and waiting is not missed.
                let mark = try await waiting.changeMark()
                try await writing.upsert(spec("ex2", "s3-copy"))
                let started = ContinuousClock.now
                try await waiting.waitForChange(after: mark, timeout: .seconds(20))
                #expect(ContinuousClock.now - started < .seconds(2))
            }
        }
    }

    @Test("waitUntilNoWorkers returns when another instance reports the last worker gone", arguments: Backend.allCases)
    func waitUntilNoWorkers(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, url in
            try await withSecondBroker(url) { other in
                let orchestrator = DeploymentStore(broker: broker)
                let supervisor = DeploymentStore(broker: other)
                try await orchestrator.upsert(spec("ex1", "s3-copy"))
                try await supervisor.register(identity("sup"), lease: .seconds(30))
                try await supervisor.report(supervisorID: "sup", deployments: [], workers: [worker("sup", "s3-copy", 0, deployment: "ex1/s3-copy")])
                let waiter = Task {
                    let started = ContinuousClock.now
                    // A long poll interval: only the notification can end the wait early.
                    let done = try await orchestrator.waitUntilNoWorkers(exchangeID: "ex1", timeout: .seconds(20), pollInterval: .seconds(20))
                    return (done, ContinuousClock.now - started)
                }
                try await Task.sleep(for: .milliseconds(700))
                try await supervisor.report(supervisorID: "sup", deployments: [], workers: [])
                let (done, waited) = try await waiter.value
                #expect(done)
                #expect(waited < .seconds(3), "woke after \(waited)")
            }
        }
    }

    @Test("notifications: names are validated, a rolled-back notify wakes nobody", arguments: Backend.allCases)
    func notificationAPI(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            await #expect(throws: BrokerError.self) { try await broker.transaction { tx in try await tx.notify("@bad") } }
            await #expect(throws: BrokerError.self) { try await broker.waitForNotification("", timeout: .zero) }
            try await warmUpNotifications(broker, "test.name")
            let mark = try await broker.notificationMark("test.name")
            struct Rollback: Error {}
            await #expect(throws: Rollback.self) {
                try await broker.transaction { tx in
                    try await tx.notify("test.name")
                    throw Rollback()
                }
            }
            var started = ContinuousClock.now
            try await broker.waitForNotification(after: mark, timeout: .milliseconds(500))
            #expect(ContinuousClock.now - started >= .milliseconds(480))
            try await broker.transaction { tx in
                try await tx.notify("test.name")
                try await tx.notify("test.name")
            }
            started = ContinuousClock.now
            try await broker.waitForNotification(after: mark, timeout: .seconds(20))
            #expect(ContinuousClock.now - started < .seconds(2))
            // An expired wait with no timeout returns at once.
            started = ContinuousClock.now
            try await broker.waitForNotification("test.other", timeout: .zero)
            #expect(ContinuousClock.now - started < .seconds(1))
        }
    }
}
