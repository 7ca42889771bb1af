import Broker
import CaseData
import CaseDatabase
import ConcurrencySupport
import ExchangerEvents
import ExchangerTestSupport
import Foundation
import Logging
import ObjectStorage
import PostgresClient
@testable import SearchTextProcessor
import Testing
import WorkerRuntime

#if canImport(Glibc)
import Glibc
#endif

/// Writes page texts as re-OCR leaves them (case 20, batch 5) and returns the search-text task.
func searchTextTask(_ store: any ObjectStore, document: Int64, pages: [String], job: String = "job-st") async throws -> SearchTextTask {
    var entries: [SearchTextTask.Page] = []
    for (position, text) in pages.enumerated() {
        let key = try CaseKeys.attachmentText(caseID: 20, batchID: 5, documentID: document, position: position)
        try await store.put(key, Data(text.utf8))
        entries.append(SearchTextTask.Page(position: position, key: key.rawValue, bytes: text.utf8.count))
    }
    return SearchTextTask(
        jobID: job, sourceCaseID: 10, caseID: 20, batchID: 5, documentID: document, sourceDocumentID: document - 1000, exhibitID: nil,
        engineDocumentID: "document_20_5_\(document)_0", pages: entries, correlationID: job)
}

/// The texts of document `document` in the search-text tests: page 1 names the document's own word.
func searchPages(_ document: Int64) -> [String] {
    ["Memo \(document): the merger agreement draft", "word\(document) appears only here", "closing board meetings"]
}

@Suite("Search-text processor", .serialized) struct SearchTextTests {
    @Test("indexes a batch in one bulk write, publishes DOCUMENT_INDEXED once, redelivery replaces rows, search finds them",
          arguments: Backend.allCases)
    func indexesInBulk(_ backend: Backend) async throws {
        try await withTemporaryDirectory { directory in
            try await withTestBroker(backend) { broker, _ in
                try await withCaseDatabases(backend.caseBackend, cases: [20]) { databases in
                    let store = try await ObjectStorage.open("file://" + directory.path)
                    let documents: [Int64] = Array(1001...1012)
                    var tasks: [SearchTextTask] = []
                    for document in documents { tasks.append(try await searchTextTask(store, document: document, pages: searchPages(document))) }
                    try await broker.createQueue("search-dlq")
                    try await broker.createQueue("search", attributes: QueueAttributes(deadLetterQueue: "search-dlq"))
                    _ = try await broker.sendBatch("search", try tasks.map { try $0.outgoing() })
                    let index = SearchIndexStore(settings: databases.settings)
                    let handler = SearchTextHandler(store: store, index: index, batchWindow: .milliseconds(200), ownsStore: false)
                    // The whole batch at once, as exchanger-search-text runs it.
                    let worker = Worker(
                        broker: broker, handler: handler, configuration: testConfiguration("search", batch: 20, concurrency: 20),
                        stager: PayloadStager(store: nil), logger: Logger(label: "test"))
                    #expect(try await runWorker(worker) { try await broker.counters("search").total == 0 })
                    #expect(await handler.bulkWrites == 1, "twelve messages, one bulk write")
                    #expect(try await index.count(caseID: 20) == documents.count * 3)
                    let rows = try await index.pages(documentID: 1005, caseID: 20)
                    #expect(rows.map(\.position) == [0, 1, 2])
                    #expect(rows.map(\.text) == searchPages(1005))
                    #expect(rows.allSatisfy { $0.batchID == 5 })

                    var indexed = try await loggedEnvelopes(broker).filter { $0.eventType == .documentIndexed }
                    #expect(indexed.count == documents.count)
                    #expect(Set(indexed.compactMap(\.documentID)) == Set(documents))
                    let detail = try #require(try indexed.first?.detail(as: DocumentIndexedDetail.self))
                    #expect(detail.pages == 3 && detail.engineDocumentID.hasPrefix("document_20_5_"))
                    #expect(indexed.allSatisfy { $0.source == "exchanger-search-text" && $0.caseID == 20 && $0.batchID == 5 })

                    // Search: one word names one document; common words find every one.
                    let own = try await index.search(caseID: 20, terms: "word1007", limit: 50)
                    #expect(own.map(\.documentID) == [1007])
                    #expect(own.first?.position == 1)
                    #expect(own.first?.snippet.contains("[word1007]") == true)
                    let common = try await index.search(caseID: 20, terms: "merger agreement", limit: 50)
                    #expect(Set(common.map(\.documentID)) == Set(documents))
                    #expect(common.allSatisfy { $0.position == 0 && $0.rank > 0 })
                    #expect(try await index.search(caseID: 20, terms: "meeting", limit: 50).count == documents.count, "stemmed: meetings")
                    #expect(try await index.search(caseID: 20, terms: "merger nonexistentword", limit: 50).isEmpty)

                    // Redelivery of a changed document (fewer pages, new text) replaces its rows; nothing is duplicated.
                    let changed = try await searchTextTask(store, document: 1003, pages: ["rewritten text only"])
                    _ = try await broker.sendBatch("search", [try changed.outgoing(), try tasks[0].outgoing(), try tasks[0].outgoing()])
                    let again = Worker(
                        broker: broker, handler: handler, configuration: testConfiguration("search", batch: 20, concurrency: 20),
                        stager: PayloadStager(store: nil), logger: Logger(label: "test"))
                    #expect(try await runWorker(again) { try await broker.counters("search").total == 0 })
                    #expect(try await index.count(caseID: 20) == documents.count * 3 - 2)
                    #expect(try await index.pages(documentID: 1003, caseID: 20).map(\.text) == ["rewritten text only"])
                    #expect(try await index.pages(documentID: 1001, caseID: 20).map(\.text) == searchPages(1001))
                    #expect(try await index.search(caseID: 20, terms: "word1003").isEmpty)
                    indexed = try await loggedEnvelopes(broker).filter { $0.eventType == .documentIndexed }
                    #expect(indexed.count == documents.count, "deterministic event ids: no second DOCUMENT_INDEXED")
                    #expect(try await broker.counters("search-dlq").total == 0)
                    await handler.shutdown()
                    try await store.shutdown()
                }
            }
        }
    }

    @Test("a bad message in a bulk fails alone; garbage is dead-lettered; a missing case is permanent", arguments: Backend.allCases)
    func failuresStayAlone(_ backend: Backend) async throws {
        try await withTemporaryDirectory { directory in
            try await withTestBroker(backend) { broker, _ in
                try await withCaseDatabases(backend.caseBackend, cases: [20]) { databases in
                    let store = try await ObjectStorage.open("file://" + directory.path)
                    let good = try await searchTextTask(store, document: 1001, pages: searchPages(1001))
                    let other = try await searchTextTask(store, document: 1002, pages: searchPages(1002))
                    var textGone = try await searchTextTask(store, document: 1003, pages: searchPages(1003))
                    textGone.pages[1].key = "case_20/processed-files/5/txt/1003/attachments/1/missing.txt"
                    var noCase = good
                    noCase.caseID = 77
                    noCase.documentID = 1099
                    try await broker.createQueue("search-dlq")
                    try await broker.createQueue("search", attributes: QueueAttributes(maxReceiveCount: 5, deadLetterQueue: "search-dlq"))
                    _ = try await broker.sendBatch("search", [
                        OutgoingMessage(body: "garbage"), try good.outgoing(), try textGone.outgoing(), try noCase.outgoing(), try other.outgoing(),
                    ])
                    let index = SearchIndexStore(settings: databases.settings)
                    let handler = SearchTextHandler(store: store, index: index, batchWindow: .milliseconds(100), ownsStore: false)
                    let worker = Worker(
                        broker: broker, handler: handler, configuration: testConfiguration("search", batch: 10, concurrency: 10),
                        stager: PayloadStager(store: nil), logger: Logger(label: "test"))
                    #expect(try await runWorker(worker) { try await broker.counters("search").total == 0 })
                    #expect(try await broker.drain("search-dlq", count: 5, timeout: .seconds(2)).count == 3)
                    #expect(try await index.pages(documentID: 1001, caseID: 20).count == 3)
                    #expect(try await index.pages(documentID: 1002, caseID: 20).count == 3)
                    #expect(try await index.pages(documentID: 1003, caseID: 20).isEmpty)
                    #expect(Set(try await loggedEnvelopes(broker).filter { $0.eventType == .documentIndexed }.compactMap(\.documentID)) == [1001, 1002])
                    await handler.shutdown()
                    try await store.shutdown()
                }
            }
        }
    }

    @Test("a bulk that fails is retried message by message: each caller gets its own outcome")
    func bulkFailureIsolation() async throws {
        let calls = LockedBox([[Int64]]())
        let writer = BulkIndexWriter(bulkSize: 100, window: .milliseconds(100)) { entries, _ in
            calls.withLock { $0.append(entries.map(\.documentID).sorted()) }
            if entries.contains(where: { $0.documentID == 2 }) { throw CaseDatabaseError(.database, "row 2 is refused") }
        }
        func succeeds(_ document: Int64) async -> Bool {
            do {
                try await writer.write([SearchIndexEntry(documentID: document, position: 0, batchID: 5, text: "t")], caseID: 20)
                return true
            } catch {
                return false
            }
        }
        async let one = succeeds(1)
        async let two = succeeds(2)
        async let three = succeeds(3)
        let outcomes = await [one, two, three]
        #expect(outcomes == [true, false, true])
        let made = calls.withLock { $0 }
        #expect(made.first == [1, 2, 3], "first one bulk of the three")
        #expect(Set(made.dropFirst()) == [[1], [2], [3]], "then each on its own")
        #expect(await writer.bulkWrites == 1)

        // The bulk size ends a bulk early: 5 rows at a bulk size of 2 → no waiting for the window.
        let sizes = LockedBox([Int]())
        let small = BulkIndexWriter(bulkSize: 2, window: .seconds(30)) { entries, _ in sizes.withLock { $0.append(entries.count) } }
        let started = ContinuousClock.now
        try await small.write((0..<5).map { SearchIndexEntry(documentID: 9, position: $0, batchID: nil, text: "x") }, caseID: 1)
        #expect(ContinuousClock.now - started < .seconds(10))
        #expect(sizes.withLock { $0 } == [5])
    }

    @Test("a PostgreSQL connection killed between batches is replaced: the next batch is indexed (review item 13)")
    func reconnectsAfterAStaleConnection() async throws {
        try await withTemporaryDirectory { directory in
            try await withCaseDatabases(.postgres, cases: [20]) { databases in
                let store = try await ObjectStorage.open("file://" + directory.path)
                let index = SearchIndexStore(settings: databases.settings)
                try await index.write([SearchIndexEntry(documentID: 1, position: 0, batchID: 5, text: "before the restart")], caseID: 20)
                let pid = try await index.pool.withConnection(caseID: 20) { connection in
                    try await connection.query("SELECT pg_backend_pid() AS pid").first?["pid"].int64
                }
                let admin = try await PostgresConnection.connect(url: databases.location)
                try await admin.query("SELECT pg_terminate_backend($1::int)", [.integer(try #require(pid))])
                await admin.close()
                try await Task.sleep(for: .milliseconds(200))
                try await index.write([SearchIndexEntry(documentID: 2, position: 0, batchID: 5, text: "after the restart")], caseID: 20)
                #expect(try await index.count(caseID: 20) == 2)
                #expect(try await index.search(caseID: 20, terms: "restart").count == 2)
                await index.shutdown()
                try await store.shutdown()
            }
        }
    }

    @Test("the exchanger-search-text executable indexes a queue into the case database and exits 0 on SIGTERM", arguments: Backend.allCases)
    func executable(_ backend: Backend) async throws {
        try await withTemporaryDirectory { directory in
            try await withTestBroker(backend) { broker, url in
                try await withCaseDatabases(backend.caseBackend, cases: [20]) { databases in
                    let store = try await ObjectStorage.open("file://" + directory.path)
                    let documents: [Int64] = Array(1001...1010)
                    var tasks: [OutgoingMessage] = []
                    for document in documents { tasks.append(try await searchTextTask(store, document: document, pages: searchPages(document)).outgoing()) }
                    try await broker.createQueue("search-dlq")
                    try await broker.createQueue("search", attributes: QueueAttributes(deadLetterQueue: "search-dlq", program: "search-text"))
                    _ = try await broker.sendBatch("search", tasks)
                    var environment = databases.environment
                    environment["EXCHANGER_SEARCH_TEXT_BULK_SIZE"] = "7"
                    let worker = try WorkerProcessHandle(
                        "exchanger-search-text",
                        ["--queue", "search", "--database", url, "--storage-url", "file://" + directory.path, "--batch-size", "10", "--wait", "1"],
                        environment: environment)
                    #expect(try await eventually(timeout: .seconds(30)) { try await broker.counters("search").total == 0 })
                    worker.signal(SIGTERM)
                    #expect(try await worker.wait() == 0)
                    let index = SearchIndexStore(settings: databases.settings)
                    #expect(try await index.count(caseID: 20) == documents.count * 3)
                    #expect(try await index.search(caseID: 20, terms: "word1004").map(\.documentID) == [1004])
                    await index.shutdown()
                    let indexed = try await loggedEnvelopes(broker).filter { $0.eventType == .documentIndexed }
                    #expect(Set(indexed.compactMap(\.documentID)) == Set(documents))
                    #expect(try await broker.counters("search-dlq").total == 0)

                    // Without case databases it refuses to start, naming the setting.
                    let refused = try WorkerProcessHandle(
                        "exchanger-search-text", ["--queue", "search", "--database", url, "--storage-url", "file://" + directory.path],
                        environment: ["EXCHANGER_CASE_DATABASE_URL": ""])
                    #expect(try await refused.wait() != 0)
                    try await store.shutdown()
                }
            }
        }
    }

    @Test("settings: bulk size and batch window from the environment, defaults, and the faults named")
    func settings() throws {
        let base = ["EXCHANGER_CASE_DATABASE_URL": "postgres://u@db/{database}"]
        let defaults = try SearchTextSettings(environment: base)
        #expect(defaults.bulkSize == 20_000)
        #expect(defaults.batchWindow == .milliseconds(20))
        var environment = base
        environment["EXCHANGER_SEARCH_TEXT_BULK_SIZE"] = "500"
        environment["EXCHANGER_SEARCH_TEXT_BATCH_WINDOW_MS"] = "0"
        let set = try SearchTextSettings(environment: environment)
        #expect(set.bulkSize == 500 && set.batchWindow == .zero)
        environment["EXCHANGER_SEARCH_TEXT_BULK_SIZE"] = "0"
        let error = #expect(throws: SearchTextError.self) { try SearchTextSettings(environment: environment) }
        #expect(error?.message.contains("EXCHANGER_SEARCH_TEXT_BULK_SIZE") == true)
    }

    @Test("exchanger search prints the matching documents with position, rank and snippet", arguments: CaseBackend.allCases)
    func searchCommand(_ backend: CaseBackend) async throws {
        try await withCaseDatabases(backend, cases: [20]) { databases in
            let index = SearchIndexStore(settings: databases.settings)
            try await index.write([
                SearchIndexEntry(documentID: 501, position: 0, batchID: 5, text: "The settlement agreement was signed"),
                SearchIndexEntry(documentID: 501, position: 3, batchID: 5, text: "payment schedule attached"),
                SearchIndexEntry(documentID: 502, position: 1, batchID: 5, text: "a settlement was discussed at the meeting"),
                SearchIndexEntry(documentID: 503, position: 0, batchID: 5, text: "nothing relevant"),
            ], caseID: 20)
            await index.shutdown()
            let table = try await runExchanger(["search", "--case", "20", "settlement"], environment: databases.environment)
            #expect(table.status == 0, "\(table.output)")
            let lines = table.output.split(separator: "\n").map(String.init)
            #expect(lines.first == "document\tposition\trank\tsnippet")
            #expect(Set(lines.dropFirst().map { $0.split(separator: "\t").prefix(2).joined(separator: " ") }) == ["501 0", "502 1"])
            #expect(lines.dropFirst().allSatisfy { $0.contains("[settlement]") })

            let json = try await runExchanger(["search", "--case", "20", "--json", "payment", "schedule"], environment: databases.environment)
            #expect(json.status == 0, "\(json.output)")
            let hits = json.output.split(separator: "\n").compactMap { try? JSONDecoder().decode(SearchHit.self, from: Data($0.utf8)) }
            #expect(hits.map(\.documentID) == [501])
            #expect(hits.first?.position == 3)

            let none = try await runExchanger(["search", "--case", "20", "unicorn"], environment: databases.environment)
            #expect(none.status == 0 && none.output.contains("no matches"))
            let missing = try await runExchanger(["search", "--case", "21", "settlement"], environment: databases.environment)
            #expect(missing.status != 0)
        }
    }
}
