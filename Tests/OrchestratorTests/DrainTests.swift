import Broker
import Deployments
import ExchangerEvents
import ExchangerTestSupport
import Foundation
import Orchestrator
import Testing

/// What the racing publishers saw.
actor RaceLog {
    private(set) var sealed = false
    private(set) var accepted = 0
    private(set) var refused = 0
    private(set) var acceptedAfterSeal = 0
    private(set) var consumed = 0

    func seal() { sealed = true }
    func send(startedAfterSeal: Bool, ok: Bool, count: Int = 1) {
        if ok {
            accepted += count
            if startedAfterSeal { acceptedAfterSeal += count }
        } else {
            refused += count
        }
    }
    func consume(_ count: Int) { consumed += count }
}

@Suite("completion and teardown")
struct DrainTests {
    @Test("publishers racing the drain: nothing accepted after the seal, nothing lost", arguments: Backend.allCases)
    func race(backend: Backend) async throws {
        try await withHarness(backend) { h in
            let record = try await h.accept(request(annotations: true))
            let plan = ProvisioningPlan(jobID: record.jobID, request: record.request)
            try await h.provisioner.provision(plan)
            try await h.move(record, to: .processing)
            let queues = plan.queues.map(\.name)
            let log = RaceLog()
            let stopConsumers = Counter()

            try await withThrowingTaskGroup(of: Void.self) { group in
                // Senders into every queue of the exchange, and a publisher of events its re-OCR queue subscribes to.
                for index in 0..<3 {
                    group.addTask {
                        for round in 0..<120 {
                            let queue = queues[(index + round) % queues.count]
                            let startedAfterSeal = await log.sealed
                            do {
                                try await h.broker.send(queue, OutgoingMessage(body: "m-\(index)-\(round)"))
                                await log.send(startedAfterSeal: startedAfterSeal, ok: true)
                            } catch let error as BrokerError where error.code == .queueSealed || error.code == .queueNotFound {
                                // A send refused by a seal that was lifted again before the broker diagnosed the
                                // refusal reports "queue refused the messages" (queueNotFound): still a refusal.
                                await log.send(startedAfterSeal: startedAfterSeal, ok: false)
                            }
                            if round % 10 == 9 { try await Task.sleep(for: .milliseconds(Int.random(in: 1...15))) }
                        }
                    }
                }
                group.addTask {
                    for round in 0..<120 {
                        let startedAfterSeal = await log.sealed
                        let event = try EventEnvelope(
                            type: .documentUploaded, source: "test", jobID: record.jobID, caseID: 42, sourceCaseID: 41, batchID: 7,
                            documentID: Int64(round + 1), detail: ExchangeStatusDetail())
                        let result = try await h.broker.publish(try event.topicMessage())
                        await log.send(startedAfterSeal: startedAfterSeal, ok: !result.deliveredTo.isEmpty)
                        if round % 10 == 9 { try await Task.sleep(for: .milliseconds(Int.random(in: 1...15))) }
                    }
                }
                // Consumers (the workers) until told to stop.
                for _ in 0..<2 {
                    group.addTask {
                        while await stopConsumers.value == 0 {
                            var got = 0
                            for queue in queues {
                                let batch = try await h.broker.receive(queue, maxMessages: 20)
                                if !batch.isEmpty {
                                    let outcome = try await h.broker.deleteBatch(queue, batch.map(\.receipt))
                                    got += outcome.succeeded.count
                                }
                            }
                            await log.consume(got)
                            if got == 0 { try await Task.sleep(for: .milliseconds(2)) }
                        }
                    }
                }
                // The drain, racing all of them.
                group.addTask {
                    try await h.drainer.waitForCompletion(record.jobID)
                    await log.seal()
                }
                // Let everyone run past the seal for a while, then stop the consumers.
                group.addTask {
                    while await !log.sealed { try await Task.sleep(for: .milliseconds(5)) }
                    try await Task.sleep(for: .milliseconds(300))
                    await stopConsumers.add(1)
                }
                try await group.waitForAll()
            }
            #expect(await log.acceptedAfterSeal == 0)
            #expect(await log.accepted > 0)
            let counters = try await h.broker.counters(queues)
            let remaining = counters.values.reduce(0) { $0 + $1.total }
            #expect(await log.accepted == log.consumed + remaining, "every accepted message was consumed or is still there")
            #expect(remaining == 0)
            #expect(try await h.store.get(record.jobID)?.state == .draining)
            for queue in queues { #expect(try await h.broker.queue(named: queue)?.sealed == true) }
            #expect(try await loggedEvents(h.broker, jobID: record.jobID, .exchangerDeleteInitiated).count == 1)
        }
    }

    @Test("a message slipping in keeps the exchange processing; the queues stay open", arguments: Backend.allCases)
    func pending(backend: Backend) async throws {
        try await withHarness(backend) { h in
            let record = try await h.accept(request())
            let plan = ProvisioningPlan(jobID: record.jobID, request: record.request)
            try await h.provisioner.provision(plan)
            try await h.move(record, to: .processing)
            try await h.broker.send(plan.queues[1].name, OutgoingMessage(body: "late"))
            #expect(try await h.drainer.checkCompletion(record.jobID) == .pending(messages: 1))
            // In flight counts too.
            let received = try await h.broker.receive(plan.queues[1].name)
            #expect(try await h.drainer.checkCompletion(record.jobID) == .pending(messages: 1))
            #expect(try await h.broker.queue(named: plan.queues[1].name)?.sealed == false)
            try await h.broker.delete(plan.queues[1].name, try #require(received.first).receipt)
            #expect(try await h.drainer.checkCompletion(record.jobID) == .sealed)
            #expect(try await h.drainer.checkCompletion(record.jobID) == .sealed)
            await #expect(throws: BrokerError.self) { try await h.broker.send(plan.queues[0].name, OutgoingMessage(body: "x")) }
        }
    }

    @Test("teardown removes every resource and publishes EXCHANGER_FINISHED once with the summary", arguments: Backend.allCases)
    func teardown(backend: Backend) async throws {
        try await withHarness(backend) { h in
            let record = try await h.accept(request(annotations: true, natives: true))
            let plan = ProvisioningPlan(jobID: record.jobID, request: record.request)
            try await h.provisioner.provision(plan)
            try await h.move(record, to: .constructingPayload)
            try await h.payload.construct(record, plan: plan, outcome: InMemoryCopier.outcome(8))
            try await h.move(try #require(await h.store.get(record.jobID)), to: .processing)
            for queue in plan.queues.map(\.name) { _ = try await h.broker.drain(queue, count: try await h.broker.counters(queue).total) }
            for document in Int64(1001)...1005 {
                try await publishFact(h.broker, jobID: record.jobID, .documentPreProcessed, document: document)
                try await publishFact(h.broker, jobID: record.jobID, .documentPreProcessed, document: document)
            }
            try await publishFact(h.broker, jobID: record.jobID, .documentNotFound, document: 1006)
            try await publishFact(h.broker, jobID: record.jobID, .documentPreProcessed, document: 1007)
            try await publishFact(h.broker, jobID: record.jobID, .uploaderFinished, document: 1007)
            try await publishFact(h.broker, jobID: "another-job", .documentPreProcessed, document: 1008)
            // Document 1004 was dead-lettered; the dead-letter processor has not published its error event yet.
            try await h.broker.send("exch-dlq", OutgoingMessage(body: "{}", attributes: [
                "jobId": .string(record.jobID), "documentId": .string("1004"), "exchanger.dead-letter": .string("retriesExhausted"),
            ]))
            try await h.broker.send("exch-dlq", OutgoingMessage(body: "{}", attributes: [
                "jobId": .string("another-job"), "documentId": .string("1003"),
            ]))
            // The re-OCR subscription delivered the uploads; workers consume them.
            for queue in plan.queues.map(\.name) { _ = try await h.broker.drain(queue, count: try await h.broker.counters(queue).total) }

            // The drainer hands each document's outcome to the copy step (the destination's ledger).
            let copier = InMemoryCopier(count: 8)
            let drainer = ExchangeDrainer(broker: h.broker, store: h.store, deployments: h.deployments, settings: h.settings.drain, outcomes: copier)
            #expect(try await drainer.checkCompletion(record.jobID) == .sealed)
            let finished = try await drainer.teardown(record.jobID)
            #expect(finished.state == .finished && finished.finishedAt != nil)
            #expect(finished.summary == ExchangeSummary(documents: 8, copied: 4, notFound: 1, failed: 2))
            #expect(await copier.recorded.value == [DocumentOutcomes(delivered: [1001, 1002, 1003, 1005], notFound: [1006], failed: [1004, 1007])])
            // The result lists what did not arrive; 1008 (nothing published) is the ledger's to count as failed.
            #expect(finished.leftBehind == LeftBehindDocuments(failed: [1004, 1007], notFound: [1006], truncated: false))
            #expect(finished.stageCounts["pre-uploader"] == StageCount(done: 6, failed: 0))
            #expect(finished.stageCounts["uploader"] == StageCount(done: 0, failed: 1))
            #expect(try await h.queues(of: record.jobID).isEmpty)
            #expect(try await h.broker.subscriptions().isEmpty)
            #expect(try await h.deployments.deployments(exchangeID: record.jobID).isEmpty)
            #expect(try await h.store.resources(record.jobID).isEmpty)
            #expect(try await h.store.resources(record.jobID, includeRemoved: true).count == plan.queues.count * 2 + 1)
            // Again: nothing changes, nothing is published twice.
            #expect(try await drainer.teardown(record.jobID).state == .finished)
            let events = try await loggedEvents(h.broker, jobID: record.jobID, .exchangerFinished)
            #expect(events.count == 1)
            #expect(events.first?.eventID == EventID.deterministic(jobID: record.jobID, type: .exchangerFinished, documentID: nil))
            #expect(try events.first?.detail(as: ExchangeStatusDetail.self).summary == finished.summary)
            #expect(events.first?.caseID == 42 && events.first?.batchID == 7)
        }
    }

    @Test("failure and cancellation run the same teardown and publish EXCHANGER_FAILED",
          arguments: Backend.allCases, TeardownTarget.allCases)
    func abort(backend: Backend, target: TeardownTarget) async throws {
        try await withHarness(backend) { h in
            let record = try await h.accept(request())
            let plan = ProvisioningPlan(jobID: record.jobID, request: record.request)
            try await h.provisioner.provision(plan)
            try await h.move(record, to: .processing)
            try await h.broker.send(plan.queues[0].name, OutgoingMessage(body: "abandoned"))
            let tearing = try await h.drainer.abort(record.jobID, target: target, reason: "operator said so")
            #expect(tearing.state == .tearingDown(target))
            #expect(try await h.drainer.abort(record.jobID, target: .failed, reason: "again").state == .tearingDown(target))
            let final = try await h.drainer.teardown(record.jobID)
            #expect(final.state == target.finalState && final.error == "operator said so")
            #expect(try await h.queues(of: record.jobID).isEmpty)
            #expect(try await h.deployments.deployments(exchangeID: record.jobID).isEmpty)
            let events = try await loggedEvents(h.broker, jobID: record.jobID, .exchangerFailed)
            #expect(events.count == 1)
            let reason = try events.first?.detail(as: ExchangeStatusDetail.self).reason ?? ""
            #expect(reason.hasPrefix(target == .failed ? "failed" : "cancelled") && reason.contains("operator said so"))
            #expect(try await loggedEvents(h.broker, jobID: record.jobID, .exchangerFinished).isEmpty)
        }
    }

    @Test("an interrupted teardown is run again and completes", arguments: Backend.allCases)
    func interruptedTeardown(backend: Backend) async throws {
        try await withHarness(backend) { h in
            let record = try await h.accept(request(annotations: true))
            let plan = ProvisioningPlan(jobID: record.jobID, request: record.request)
            try await h.provisioner.provision(plan)
            try await h.move(record, to: .processing)
            #expect(try await h.drainer.checkCompletion(record.jobID) == .sealed)
            // The first teardown "crashed" after deleting two queues and one deployment.
            try await h.broker.deleteQueue(plan.queues[0].name)
            try await h.broker.deleteQueue(plan.queues[2].name)
            try await h.deployments.remove(id: plan.deployments[1].id)
            let final = try await h.drainer.teardown(record.jobID)
            #expect(final.state == .finished)
            #expect(try await h.queues(of: record.jobID).isEmpty)
            #expect(try await h.broker.subscriptions().isEmpty)
            #expect(try await h.deployments.deployments(exchangeID: record.jobID).isEmpty)
            #expect(try await loggedEvents(h.broker, jobID: record.jobID, .exchangerFinished).count == 1)
        }
    }

    @Test("teardown deletes the queues only after the exchange's workers are gone", arguments: Backend.allCases)
    func waitsForWorkers(backend: Backend) async throws {
        try await withHarness(backend) { h in
            let record = try await h.accept(request())
            let plan = ProvisioningPlan(jobID: record.jobID, request: record.request)
            try await h.provisioner.provision(plan)
            try await h.move(record, to: .processing)
            let supervisor = "sup-1"
            try await h.deployments.register(SupervisorIdentity(id: supervisor, hostname: "h", pid: 1), lease: .seconds(30))
            _ = try await h.deployments.claim(supervisorID: supervisor, lease: .seconds(30))
            let deployment = plan.deployments[0]
            let worker = WorkerRecord(
                supervisorID: supervisor, program: deployment.program, instance: 0, deploymentID: deployment.id, pid: 4242,
                state: .running, startedAt: Date(), restarts: 0)
            try await h.deployments.report(
                supervisorID: supervisor, deployments: [DeploymentCounts(id: deployment.id, targetProcs: 1, runningProcs: 1)], workers: [worker])
            #expect(try await h.drainer.checkCompletion(record.jobID) == .sealed)
            let teardown = Task { try await h.drainer.teardown(record.jobID) }
            let stopped = try await eventually { try await h.deployments.deployment(id: deployment.id)?.desiredState == .stopped }
            #expect(stopped)
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await h.broker.queue(named: deployment.queue) != nil, "the queue outlives its workers")
            try await h.deployments.report(
                supervisorID: supervisor, deployments: [DeploymentCounts(id: deployment.id, targetProcs: 0, runningProcs: 0)], workers: [])
            #expect(try await teardown.value.state == .finished)
            #expect(try await h.queues(of: record.jobID).isEmpty)
        }
    }
}
