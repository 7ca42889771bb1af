import Broker
import Deployments
import ExchangerEvents
import ExchangerTestSupport
import Foundation
import Orchestrator
import Testing

@Suite("provisioning")
struct ProvisioningTests {
    struct Configuration: Sendable, CustomTestStringConvertible {
        var annotations: Bool
        var natives: Bool
        var stages: [String]
        var programs: [String]
        var entries: [String]
        var routes: [String]
        var testDescription: String { "annotations \(annotations), natives \(natives)" }
    }

    static let configurations: [Configuration] = [
        Configuration(annotations: false, natives: false, stages: ["s3_copy", "doc_uploader"], programs: ["s3-copy", "uploader"],
                      entries: ["s3_copy"], routes: ["uploader"]),
        Configuration(annotations: false, natives: true, stages: ["s3_copy", "doc_uploader"], programs: ["s3-copy", "uploader"],
                      entries: ["s3_copy"], routes: ["uploader"]),
        Configuration(annotations: true, natives: false, stages: ["pre_uploader", "re_ocr", "search_text", "doc_uploader"],
                      programs: ["pre-uploader", "re-ocr", "search-text", "uploader"], entries: ["pre_uploader"],
                      routes: ["preUploader", "reOCR", "searchText", "uploader"]),
        Configuration(annotations: true, natives: true, stages: ["s3_copy", "pre_uploader", "re_ocr", "search_text", "doc_uploader"],
                      programs: ["s3-copy", "pre-uploader", "re-ocr", "search-text", "uploader"], entries: ["pre_uploader", "s3_copy"],
                      routes: ["preUploader", "reOCR", "searchText", "uploader"]),
    ]

    @Test("the plan of each configuration", arguments: configurations)
    func plan(_ c: Configuration) throws {
        let plan = ProvisioningPlan(jobID: "job-1", request: request(annotations: c.annotations, natives: c.natives))
        #expect(plan.queues.map(\.name) == c.stages.map { "doc_exch_\($0)_queue_42_7" })
        for queue in plan.queues {
            #expect(queue.attributes.deadLetterQueue == "exch-dlq")
            #expect(queue.attributes.exchangeID == "job-1")
            #expect(queue.attributes.program == queue.stage.program)
            #expect(queue.attributes.maxReceiveCount == 3)
            try queue.attributes.validate(queueName: queue.name)
        }
        #expect(plan.deployments.map(\.program) == c.programs)
        #expect(plan.deployments.allSatisfy { $0.id == "job-1/\($0.program)" && $0.exchangeID == "job-1" && $0.minProcs == 1 && $0.maxProcs == 4 })
        #expect(zip(plan.deployments, plan.queues).allSatisfy { $0.queue == $1.name })
        #expect(plan.entryQueues.map(\.name) == c.entries.map { "doc_exch_\($0)_queue_42_7" })
        #expect(plan.entryQueues.map(\.nativesOnly) == c.entries.map { c.annotations && $0 == "s3_copy" })
        #expect(plan.routes.keys.sorted() == c.routes.sorted())
        #expect(plan.routes[DocumentTask.Route.uploader] == "doc_exch_doc_uploader_queue_42_7")
        if c.annotations {
            #expect(plan.subscriptions == [PlannedSubscription(
                queue: "doc_exch_re_ocr_queue_42_7", topic: nil,
                filterPolicy: #"{"batchId":["7"],"caseId":["42"],"eventType":["DOCUMENT_UPLOADED"]}"#)])
        } else {
            #expect(plan.subscriptions.isEmpty)
        }
    }

    @Test("provisioning creates exactly the plan and a re-run creates nothing new",
          arguments: Backend.allCases, configurations)
    func provision(backend: Backend, c: Configuration) async throws {
        try await withHarness(backend) { h in
            let record = try await h.accept(request(annotations: c.annotations, natives: c.natives))
            let plan = ProvisioningPlan(jobID: record.jobID, request: record.request)
            try await h.provisioner.provision(plan)
            func snapshot() async throws -> ([String], [Subscription], [String], [ExchangeResource]) {
                (try await h.broker.listQueues().map(\.name).sorted(), try await h.broker.subscriptions(),
                 try await h.deployments.deployments().map(\.id).sorted(), try await h.store.resources(record.jobID))
            }
            let first = try await snapshot()
            #expect(first.0 == (plan.queues.map(\.name) + ["exch-dlq"]).sorted())
            #expect(first.1.map(\.queue) == plan.subscriptions.map(\.queue))
            #expect(first.2 == plan.deployments.map(\.id).sorted())
            #expect(first.3.filter { $0.kind == .queue }.map(\.name) == plan.queues.map(\.name))
            #expect(first.3.filter { $0.kind == .subscription }.map(\.name) == plan.subscriptions.map(\.queue))
            #expect(first.3.filter { $0.kind == .deployment }.map(\.name) == plan.deployments.map(\.id))
            try await h.provisioner.provision(plan)
            let second = try await snapshot()
            #expect(second.0 == first.0 && second.1 == first.1 && second.2 == first.2 && second.3 == first.3)
            if c.annotations {
                // The re-OCR queue receives DOCUMENT_UPLOADED of this destination case and batch only.
                try await publishFact(h.broker, jobID: record.jobID, .documentUploaded, document: 1001)
                try await publishFact(h.broker, jobID: record.jobID, .documentCopied, document: 1002)
                #expect(try await h.broker.counters("doc_exch_re_ocr_queue_42_7").total == 1)
            }
        }
    }

    @Test("a queue of another exchange with the same destination and batch is a conflict", arguments: Backend.allCases)
    func conflict(backend: Backend) async throws {
        try await withHarness(backend) { h in
            let one = try await h.accept(request(source: 1))
            let two = try await h.accept(request(source: 2))
            try await h.provisioner.provision(ProvisioningPlan(jobID: one.jobID, request: one.request))
            do {
                try await h.provisioner.provision(ProvisioningPlan(jobID: two.jobID, request: two.request))
                Issue.record("provisioned over another exchange's queues")
            } catch let error as OrchestratorError {
                #expect(error.code == .resourceConflict)
            }
            // Tearing the refused exchange down leaves the other exchange's queues alone.
            try await h.drainer.abort(two.jobID, target: .failed, reason: "conflict")
            #expect(try await h.drainer.teardown(two.jobID).state == .failed)
            #expect(try await h.queues(of: one.jobID).count == 2)
            #expect(try await h.broker.queue(named: "doc_exch_s3_copy_queue_42_7")?.sealed == false)
        }
    }

    @Test("a refused exchange's teardown keeps the other exchange's subscription", arguments: Backend.allCases)
    func conflictKeepsSubscription(backend: Backend) async throws {
        try await withHarness(backend) { h in
            let one = try await h.accept(request(source: 1, annotations: true))
            let two = try await h.accept(request(source: 2, annotations: true))
            try await h.provisioner.provision(ProvisioningPlan(jobID: one.jobID, request: one.request))
            let runner = h.runner(InMemoryCopier(count: 1))
            try await runner.step(two.jobID)
            #expect(try await runner.step(two.jobID).state == .tearingDown(.failed))
            #expect(try await runner.run(two.jobID).state == .failed)
            #expect(try await h.broker.subscriptions().map(\.queue) == ["doc_exch_re_ocr_queue_42_7"])
            #expect(try await h.queues(of: one.jobID).count == 4)
        }
    }
}
