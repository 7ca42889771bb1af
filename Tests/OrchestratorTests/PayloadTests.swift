import Broker
import ExchangerEvents
import ExchangerTestSupport
import Foundation
import Orchestrator
import Testing

@Suite("payload construction")
struct PayloadTests {
    @Test("one task per document to the entry queue, also when re-run after a partial run", arguments: Backend.allCases)
    func oncePerDocument(backend: Backend) async throws {
        try await withHarness(backend) { h in
            let record = try await h.move(try await h.accept(request()), to: .constructingPayload)
            let plan = ProvisioningPlan(jobID: record.jobID, request: record.request)
            try await h.provisioner.provision(plan)
            let outcome = InMemoryCopier.outcome(50)
            // A run that "crashed" after 25 documents (sends and cursor commit together), then the full runs.
            #expect(try await h.payload.construct(record, plan: plan, outcome: CopyOutcome(documents: Array(outcome.documents.prefix(25)))) == 25)
            #expect(try await h.payload.construct(record, plan: plan, outcome: outcome) == 50)
            #expect(try await h.payload.construct(record, plan: plan, outcome: outcome) == 50)
            let queue = "doc_exch_s3_copy_queue_42_7"
            #expect(try await h.broker.counters(queue).total == 50)
            let messages = try await h.broker.drain(queue, count: 50)
            let tasks = try messages.map { try DocumentTask.decode($0.body) }
            #expect(Set(tasks.map(\.sourceDocumentID)) == Set(1...50))
            #expect(tasks.allSatisfy { $0.documentID == $0.sourceDocumentID + 1000 && $0.jobID == record.jobID && $0.caseID == 42 })
            #expect(tasks.allSatisfy { $0.routes == plan.routes && $0.batchID == 7 && $0.sourceCaseID == 41 })
            let stored = try await h.store.get(record.jobID)
            #expect(stored?.totalDocuments == 50 && stored?.payloadSent == 50)
        }
    }

    @Test("concurrent runs send each task once; annotations + natives feed both entry queues", arguments: Backend.allCases)
    func concurrentRuns(backend: Backend) async throws {
        try await withHarness(backend) { h in
            let record = try await h.move(try await h.accept(request(annotations: true, natives: true)), to: .constructingPayload)
            let plan = ProvisioningPlan(jobID: record.jobID, request: record.request)
            try await h.provisioner.provision(plan)
            let outcome = InMemoryCopier.outcome(40)
            try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<3 { group.addTask { try await h.payload.construct(record, plan: plan, outcome: outcome) } }
                for try await total in group { #expect(total == 60) }
            }
            #expect(try await h.broker.counters("doc_exch_pre_uploader_queue_42_7").total == 40)
            // Only documents with natives go to s3-copy next to the annotation path.
            #expect(try await h.broker.counters("doc_exch_s3_copy_queue_42_7").total == 20)
            #expect(try await h.store.get(record.jobID)?.payloadSent == 60)
        }
    }

    @Test("annotation tasks carry the request's routing and the source batch and exhibit")
    func annotationRouting() async throws {
        try await withHarness(.sqlite) { h in
            var exchangeRequest = request(annotations: true)
            exchangeRequest.redactionsAs = .brandIn
            exchangeRequest.batesAs = .brandIn
            let record = try await h.accept(exchangeRequest)
            let outcome = CopyOutcome(documents: [
                CopiedDocument(
                    sourceDocumentID: 5, documentID: 105, exhibitID: 9, files: [DocumentFile(name: "5.pdf", kind: .rendition)], sourceBatchID: 3,
                    sourceExhibitID: 8),
            ])
            let messages = PayloadConstructor.messages(for: record, plan: ProvisioningPlan(jobID: record.jobID, request: record.request), outcome: outcome)
            let task = messages.first { $0.queue.contains("pre_uploader") }?.task
            #expect(task?.annotationRouting == [
                "redactions": "brand_in", "highlights": "layer", "notes": "layer", "stickers": "layer", "bates": "brand_in",
                "confidentialityCodes": "layer",
            ])
            #expect(task?.sourceBatchID == 3 && task?.sourceExhibitID == 8)
            let plainRecord = try await h.accept(request(source: 43, annotations: false))
            let plain = PayloadConstructor.messages(
                for: plainRecord, plan: ProvisioningPlan(jobID: plainRecord.jobID, request: plainRecord.request), outcome: outcome)
            #expect(!plain.isEmpty && plain.allSatisfy { $0.task.annotationRouting == nil && $0.task.sourceBatchID == nil }, "no annotations: the task is as before")
        }
    }
}
