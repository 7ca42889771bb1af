import CaseData
import CaseDatabase
import DatabaseSupport
import ExchangerTestSupport
import Foundation
import Testing

@Suite("Case schema and seeding")
struct CaseSchemaTests {
    @Test("case migrations apply once and are safe to re-run", arguments: Backend.allCases)
    func migrationsAreIdempotent(backend: Backend) async throws {
        try await withCaseDatabases(backend) { databases in
            #expect(try await databases.create(caseID: 101) == CaseSchema.migrations.map(\.version))
            #expect(try await databases.create(caseID: 101) == [])
            #expect(try await databases.migrate(caseID: 101) == [])
            #expect(try await databases.schemaVersion(caseID: 101) == CaseSchema.currentVersion)
            // The batch status table of BatchStatusStore still works beside the case schema.
            let store = BatchStatusStore(settings: try CaseDatabaseSettings(locator: databases.locator))
            let update = BatchStatusUpdate(batchID: 7, jobID: "job", sourceCaseID: 1, status: .initiated, eventID: "e1")
            #expect(try await store.record(update, caseID: 101))
            #expect(try await store.status(caseID: 101, batchID: 7)?.status == .initiated)
            await store.shutdown()
            let connection = try await TestCaseConnection.open(databases, caseID: 101)
            for table in CaseSchema.dataTables + ["exchange_id_map", "exchange_copy_checkpoints"] {
                #expect(try await connection.count(table) == 0, "\(table) exists and is empty")
            }
            await connection.close()
        }
    }

    @Test("seeding writes about 20 rows per document, deterministically", arguments: Backend.allCases)
    func seedCounts(backend: Backend) async throws {
        try await withCaseDatabases(backend) { databases in
            let seeder = CaseSeeder(databases: databases)
            let report = try await seeder.seed(caseID: 111, documents: 25, seed: 7)
            let perDocument: [String: Int] = [
                "documents": 1, "document_variants": 3, "exhibits": 1, "custodian_exhibits": 1, "label_category_labels": 3,
                "custom_field_values": 3, "folder_taggings": 2, "issue_taggings": 2, "confidentiality_logs": 2, "relevancy_logs": 2,
            ]
            #expect(perDocument.values.reduce(0, +) == 20)
            for (table, count) in perDocument { #expect(report.rows[table] == count * 25, "\(table)") }
            #expect(report.rows["confidentiality_codes"] == 6)
            #expect(report.rows["label_categories"] == 4)
            #expect(report.rows["labels"] == 12)
            #expect(report.rows["folder_tags"] == 8)
            #expect(report.rows["issues"] == 6)
            #expect(report.rows["custom_fields"] == 5)
            #expect(report.firstDocumentID == 1 && report.lastDocumentID == 25)
            let connection = try await TestCaseConnection.open(databases, caseID: 111)
            #expect(try await tableCounts(connection) == report.rows)
            // Same seed, same case.
            _ = try await seeder.seed(caseID: 112, documents: 25, seed: 7)
            let twin = try await TestCaseConnection.open(databases, caseID: 112)
            for table in CaseSchema.dataTables {
                #expect(try await connection.query("SELECT * FROM \(table) ORDER BY id") == twin.query("SELECT * FROM \(table) ORDER BY id"), "\(table)")
            }
            // A seeded case refuses a second seed.
            await #expect(throws: CaseDataError.self) { try await seeder.seed(caseID: 111, documents: 5) }
            await connection.close()
            await twin.close()
        }
    }
}

@Suite("Case-data copy")
struct CaseCopyTests {
    @Test("a copy reproduces the selected rows exactly through the id map", arguments: Backend.allCases)
    func copyIsExact(backend: Backend) async throws {
        try await withCaseDatabases(backend) { databases in
            try await seedPair(databases, source: 201, destination: 202)
            let selected: Set<Int64> = [2, 3, 5, 8, 13, 21, 34]
            let destinationBefore = try await TestCaseConnection.open(databases, caseID: 202)
            let countsBefore = try await tableCounts(destinationBefore)
            await destinationBefore.close()
            let copier = CaseDataCopier(databases: databases)
            let report = try await copier.copy(sourceCase: 201, destinationCase: 202, selection: .documentIDs(Array(selected) + [9999]), jobID: "exact")
            #expect(Set(report.documents.map(\.sourceDocumentID)) == selected)
            #expect(Set(report.documents.map(\.destinationDocumentID)).isDisjoint(with: 1...10), "new ids, after the destination's own")
            let source = try await TestCaseConnection.open(databases, caseID: 201)
            let destination = try await TestCaseConnection.open(databases, caseID: 202)
            try await verifyExactCopy(source: source, destination: destination, job: "exact", documents: selected)
            // Each document comes with its new exhibit and its files.
            let exhibitMap = try await idMap(destination, job: "exact")["exhibits"] ?? [:]
            for document in report.documents {
                let sourceExhibit = try #require(try await source.ids("SELECT id FROM exhibits WHERE document_id = \(document.sourceDocumentID)").first)
                #expect(document.destinationExhibitID == exhibitMap[sourceExhibit])
                // The source side, for the document's id in the source document engine.
                #expect(document.sourceExhibitID == sourceExhibit)
                let sourceBatch = try await source.ids("SELECT batch_id FROM documents WHERE id = \(document.sourceDocumentID)").first
                #expect(sourceBatch != nil && document.sourceBatchID == sourceBatch)
                #expect(Set(document.files.map(\.variant)) == ["pdf", "native", "text"])
                #expect(document.files.contains { $0.name == "\(document.sourceDocumentID).pdf" && $0.variant == "pdf" })
            }
            // Parents come before children in the copy order.
            let order = report.tables.map(\.table)
            for (table, keys) in schemaForeignKeys {
                for parent in keys.values {
                    if let child = order.firstIndex(of: table), let parentIndex = order.firstIndex(of: parent) { #expect(parentIndex < child) }
                }
            }
            // Nothing but the job's rows was added (merged tables and the exhibit-id field values aside).
            let countsAfter = try await tableCounts(destination)
            for report in report.tables where !mergedTables.contains(report.table) && report.table != "custom_field_values" {
                #expect(countsAfter[report.table] == (countsBefore[report.table] ?? 0) + report.selectedRows, "\(report.table)")
                #expect(report.insertedRows == report.selectedRows)
            }
            #expect(report.idMapSize == (try await destination.count("exchange_id_map", "job_id = 'exact'")))
            await source.close()
            await destination.close()
        }
    }

    @Test("the full-text index (migration 3) exists, and the case-data copy leaves it out", arguments: Backend.allCases)
    func searchIndexIsNotCopied(backend: Backend) async throws {
        try await withCaseDatabases(backend) { databases in
            try await seedPair(databases, source: 301, destination: 302)
            #expect(try await databases.schemaVersion(caseID: 301) >= 3)
            let index = SearchIndexStore(settings: try CaseDatabaseSettings(locator: databases.locator))
            try await index.write([
                SearchIndexEntry(documentID: 2, position: 0, batchID: 1, text: "source case index row"),
                SearchIndexEntry(documentID: 3, position: 0, batchID: 1, text: "another source row"),
            ], caseID: 301)
            let report = try await CaseDataCopier(databases: databases).copy(
                sourceCase: 301, destinationCase: 302, selection: .documentIDs([2, 3]), jobID: "no-index")
            #expect(report.documents.count == 2)
            #expect(!report.tables.map(\.table).contains { $0.hasPrefix("document_search") })
            #expect(try await index.count(caseID: 301) == 2)
            #expect(try await index.count(caseID: 302) == 0, "the destination's index is search-text's to write")
            #expect(Set(try await index.search(caseID: 301, terms: "source").map(\.documentID)) == [2, 3])
            await index.shutdown()
        }
    }

    @Test("re-running a finished job copies nothing, with or without its checkpoints", arguments: Backend.allCases)
    func rerunCopiesNothing(backend: Backend) async throws {
        try await withCaseDatabases(backend) { databases in
            try await seedPair(databases, source: 211, destination: 212)
            let copier = CaseDataCopier(databases: databases)
            let selection = CaseDocumentSelection.documentIDs([1, 4, 9, 16, 25])
            let first = try await copier.copy(sourceCase: 211, destinationCase: 212, selection: selection, jobID: "again")
            let destination = try await TestCaseConnection.open(databases, caseID: 212)
            let counts = try await tableCounts(destination)
            let second = try await copier.copy(sourceCase: 211, destinationCase: 212, selection: selection, jobID: "again")
            #expect(second.insertedRows == 0)
            #expect(second.tables.allSatisfy { $0.resumed })
            #expect(second.documents == first.documents)
            #expect(try await tableCounts(destination) == counts)
            // Without checkpoints the persisted id map still prevents duplicates.
            try await destination.query("DELETE FROM exchange_copy_checkpoints WHERE job_id = 'again'")
            let third = try await copier.copy(sourceCase: 211, destinationCase: 212, selection: selection, jobID: "again")
            #expect(third.insertedRows == 0)
            #expect(third.documents == first.documents)
            #expect(try await tableCounts(destination) == counts)
            let source = try await TestCaseConnection.open(databases, caseID: 211)
            try await verifyExactCopy(source: source, destination: destination, job: "again", documents: [1, 4, 9, 16, 25])
            await source.close()
            await destination.close()
        }
    }

    struct Interrupt: Error {}

    @Test("an interrupted copy resumes at the first unfinished table, without duplicates", arguments: Backend.allCases)
    func interruptedCopyResumes(backend: Backend) async throws {
        try await withCaseDatabases(backend) { databases in
            try await seedPair(databases, source: 221, destination: 222)
            let selection = CaseDocumentSelection.documentIDs(Array(1...20))
            let finishedBeforeFailure = 5
            let seen = Counter()
            let failing = CaseDataCopier(databases: databases, afterTable: { _, _ in
                if await seen.increment() == finishedBeforeFailure { throw Interrupt() }
            })
            await #expect(throws: Interrupt.self) {
                try await failing.copy(sourceCase: 221, destinationCase: 222, selection: selection, jobID: "resume")
            }
            let destination = try await TestCaseConnection.open(databases, caseID: 222)
            let checkpoints = try await destination.query(
                "SELECT table_name, position FROM exchange_copy_checkpoints WHERE job_id = 'resume' ORDER BY position")
            #expect(checkpoints.count == finishedBeforeFailure)
            let done = checkpoints.compactMap { $0["table_name"].string }
            let report = try await CaseDataCopier(databases: databases).copy(
                sourceCase: 221, destinationCase: 222, selection: selection, jobID: "resume")
            #expect(report.tables.prefix(finishedBeforeFailure).map(\.table) == done)
            #expect(report.tables.prefix(finishedBeforeFailure).allSatisfy { $0.resumed })
            #expect(report.tables.dropFirst(finishedBeforeFailure).allSatisfy { !$0.resumed })
            #expect(try await destination.count("exchange_copy_checkpoints", "job_id = 'resume'") == report.tables.count + 1)
            let source = try await TestCaseConnection.open(databases, caseID: 221)
            try await verifyExactCopy(source: source, destination: destination, job: "resume", documents: Set(1...20))
            // No duplicates: every mapped row once, and no unmapped extra rows in non-merged tables.
            let map = try await idMap(destination, job: "resume")
            for table in ["documents", "exhibits", "document_variants", "label_category_labels", "folder_taggings", "confidentiality_logs"] {
                #expect(try await destination.count(table) == 10 * (table == "document_variants" || table == "label_category_labels" ? 3 : table == "folder_taggings" || table == "confidentiality_logs" ? 2 : 1) + (map[table]?.count ?? 0), "\(table)")
            }
            await source.close()
            await destination.close()
        }
    }

    @Test("a resumed job refuses rows whose parents changed in the source since its first run", arguments: Backend.allCases)
    func resumedJobDetectsSourceChanges(backend: Backend) async throws {
        try await withCaseDatabases(backend) { databases in
            try await seedPair(databases, source: 281, destination: 282)
            let failing = CaseDataCopier(databases: databases, afterTable: { table, _ in
                if table == "custodians" { throw Interrupt() }
            })
            let selection = CaseDocumentSelection.documentIDs([1, 2, 3])
            await #expect(throws: Interrupt.self) {
                try await failing.copy(sourceCase: 281, destinationCase: 282, selection: selection, jobID: "changed")
            }
            let source = try await TestCaseConnection.open(databases, caseID: 281)
            try await source.query("INSERT INTO custodians (id, name) VALUES (900, 'Late Custodian')")
            try await source.query("UPDATE documents SET custodian_id = 900 WHERE id = 2")
            await source.close()
            do {
                _ = try await CaseDataCopier(databases: databases).copy(sourceCase: 281, destinationCase: 282, selection: selection, jobID: "changed")
                Issue.record("the copy must refuse a document whose custodian the job did not copy")
            } catch let error as CaseDataError {
                #expect(error.code == .inconsistentSource)
            }
            let destination = try await TestCaseConnection.open(databases, caseID: 282)
            #expect(try await destination.count("exchange_id_map", "job_id = 'changed' AND table_name = 'documents'") == 0)
            await destination.close()
        }
    }

    @Test("a cancelled copy fails as interrupted and a re-run completes it", arguments: Backend.allCases)
    func cancelledCopyResumes(backend: Backend) async throws {
        try await withCaseDatabases(backend) { databases in
            try await seedPair(databases, source: 231, destination: 232)
            let selection = CaseDocumentSelection.documentIDs(Array(1...12))
            let gate = Counter()
            let task = Task {
                try await CaseDataCopier(databases: databases, afterTable: { _, _ in
                    if await gate.increment() == 3 { withUnsafeCurrentTask { $0?.cancel() } }
                }).copy(sourceCase: 231, destinationCase: 232, selection: selection, jobID: "cancel")
            }
            await #expect(throws: CaseDataError.self) { try await task.value }
            let destination = try await TestCaseConnection.open(databases, caseID: 232)
            #expect(try await destination.count("exchange_copy_checkpoints", "job_id = 'cancel'") == 3)
            let report = try await CaseDataCopier(databases: databases).copy(sourceCase: 231, destinationCase: 232, selection: selection, jobID: "cancel")
            #expect(report.tables.filter(\.resumed).count == 3)
            let source = try await TestCaseConnection.open(databases, caseID: 231)
            try await verifyExactCopy(source: source, destination: destination, job: "cancel", documents: Set(1...12))
            await source.close()
            await destination.close()
        }
    }

    @Test("post-copy rules: properties cleared, exhibit id field, bitmask remapped, names merged", arguments: Backend.allCases)
    func postCopyRules(backend: Backend) async throws {
        try await withCaseDatabases(backend) { databases in
            try await seedPair(databases, source: 241, destination: 242)
            let source = try await TestCaseConnection.open(databases, caseID: 241)
            let destination = try await TestCaseConnection.open(databases, caseID: 242)
            // A code only the source has, on a bit the destination already uses for another code.
            let sourceBits = Set(try await source.query("SELECT bit_position FROM confidentiality_codes").compactMap { $0["bit_position"].int })
            let destinationBits = Set(try await destination.query("SELECT bit_position FROM confidentiality_codes").compactMap { $0["bit_position"].int })
            let clash = try #require(destinationBits.subtracting(sourceBits).min())
            try await source.query("INSERT INTO confidentiality_codes (id, name, bit_position) VALUES (100, 'Source Only', \(clash))")
            try await source.query("UPDATE documents SET confidentiality_status = confidentiality_status | \(Int64(1) << Int64(clash)) WHERE id = 3")
            let categoriesBefore = try await destination.count("label_categories")
            let foldersBefore = try await destination.count("folder_tags")
            let selected: Set<Int64> = [1, 2, 3, 4, 5, 6]
            let report = try await CaseDataCopier(databases: databases).copy(
                sourceCase: 241, destinationCase: 242, selection: .documentIDs(Array(selected)), jobID: "rules")
            let map = try await idMap(destination, job: "rules")
            // document_properties cleared on the exchanged exhibits (the source keeps them).
            let exhibits = try #require(map["exhibits"])
            #expect(exhibits.count == 6)
            #expect(try await source.count("exhibits", "id IN \(inList(exhibits.keys)) AND document_properties IS NOT NULL") == 6)
            #expect(try await destination.count("exhibits", "id IN \(inList(exhibits.values)) AND document_properties IS NULL") == 6)
            #expect(try await destination.count("exhibits", "document_properties IS NOT NULL") == 10, "the destination's own exhibits untouched")
            // The source exhibit id as decimal text in a text field.
            let field = try #require(try await destination.query("SELECT id, field_type FROM custom_fields WHERE name = 'Source Exhibit ID'").first)
            #expect(field["field_type"].string == "text")
            for (old, new) in exhibits {
                let values = try await destination.query(
                    "SELECT text_value, number_value FROM custom_field_values WHERE custom_field_id = $1 AND exhibit_id = $2", [field["id"], .integer(new)])
                #expect(values.map { $0["text_value"] } == [.text(String(old))])
                #expect(values.map { $0["number_value"] } == [.null])
            }
            // The bitmask, remapped through code names.
            var sourceNames: [Int64: String] = [:]
            for row in try await source.query("SELECT name, bit_position FROM confidentiality_codes") {
                sourceNames[try #require(row["bit_position"].int64)] = row["name"].string
            }
            var destinationBit: [String: Int64] = [:]
            for row in try await destination.query("SELECT name, bit_position FROM confidentiality_codes") {
                destinationBit[try #require(row["name"].string)] = row["bit_position"].int64
            }
            let created = try #require(destinationBit["Source Only"])
            #expect(created != Int64(clash), "a new code gets a free bit")
            #expect(try await destination.count("confidentiality_codes", "name = 'Source Only'") == 1)
            var checked = 0
            for table in ["documents", "exhibits"] {
                for (old, new) in try #require(map[table]) {
                    let before = try #require(try await source.query("SELECT confidentiality_status FROM \(table) WHERE id = \(old)").first?["confidentiality_status"].int64)
                    let after = try #require(try await destination.query("SELECT confidentiality_status FROM \(table) WHERE id = \(new)").first?["confidentiality_status"].int64)
                    var expected: Int64 = 0
                    for bit in 0..<Int64(63) where (before >> bit) & 1 == 1 {
                        let name = try #require(sourceNames[bit])
                        expected |= 1 << (try #require(destinationBit[name]))
                    }
                    #expect(after == expected, "\(table) \(old)")
                    if before != 0 { checked += 1 }
                }
            }
            #expect(checked > 0)
            let document3 = try #require(map["documents"]?[3])
            let mask3 = try #require(try await destination.query("SELECT confidentiality_status FROM documents WHERE id = \(document3)").first?["confidentiality_status"].int64)
            #expect((mask3 >> created) & 1 == 1)
            // Label categories and folder tags merged by name: no new rows, no duplicate names.
            #expect(try await destination.count("label_categories") == categoriesBefore)
            #expect(try await destination.count("folder_tags") == foldersBefore)
            for table in ["label_categories", "folder_tags", "custom_fields", "confidentiality_codes"] {
                #expect(try await destination.query("SELECT name FROM \(table) GROUP BY name HAVING count(*) > 1").isEmpty, "\(table)")
                for (old, new) in map[table] ?? [:] {
                    let before = try await source.query("SELECT name FROM \(table) WHERE id = \(old)").first?["name"]
                    let after = try await destination.query("SELECT name FROM \(table) WHERE id = \(new)").first?["name"]
                    #expect(before == after)
                }
            }
            // Merged categories were existing destination rows.
            let destinationCategoryIDs = try await destination.ids("SELECT id FROM label_categories")
            #expect(Set((map["label_categories"] ?? [:]).values).isSubset(of: destinationCategoryIDs))
            #expect(report.tables.first { $0.table == "label_categories" }?.insertedRows == 0)
            await source.close()
            await destination.close()
        }
    }

    @Test("a new table and a new column are copied with no code change", arguments: Backend.allCases)
    func schemaChangeNeedsNoCode(backend: Backend) async throws {
        try await withCaseDatabases(backend) { databases in
            try await seedPair(databases, source: 291, destination: 292)
            let source = try await TestCaseConnection.open(databases, caseID: 291)
            let destination = try await TestCaseConnection.open(databases, caseID: 292)
            for connection in [source, destination] {
                let key = connection.isPostgres ? "bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY" : "INTEGER PRIMARY KEY"
                try await connection.execute("""
                    CREATE TABLE document_notes (
                        id \(key), document_id bigint NOT NULL REFERENCES documents (id), issue_id bigint NULL REFERENCES issues (id), body text NOT NULL);
                    CREATE TABLE note_replies (id \(key), note_id bigint NOT NULL REFERENCES document_notes (id), body text NOT NULL);
                    ALTER TABLE documents ADD COLUMN review_note text NULL;
                    """)
            }
            try await source.query("INSERT INTO document_notes (id, document_id, issue_id, body) VALUES (1, 2, 5, 'note on 2'), (2, 3, NULL, 'note on 3'), (3, 30, 1, 'not selected')")
            try await source.query("INSERT INTO note_replies (id, note_id, body) VALUES (1, 1, 'reply'), (2, 3, 'reply to unselected')")
            try await source.query("UPDATE documents SET review_note = 'look at page 2' WHERE id = 2")
            let report = try await CaseDataCopier(databases: databases).copy(
                sourceCase: 291, destinationCase: 292, selection: .documentIDs([2, 3]), jobID: "schema")
            let order = report.tables.map(\.table)
            #expect(order.contains("document_notes") && order.contains("note_replies"))
            #expect((order.firstIndex(of: "document_notes") ?? 99) < (order.firstIndex(of: "note_replies") ?? 0))
            let map = try await idMap(destination, job: "schema")
            #expect(Set((map["document_notes"] ?? [:]).keys) == [1, 2])
            #expect(Set((map["note_replies"] ?? [:]).keys) == [1])
            let note = try #require(map["document_notes"]?[1])
            let row = try #require(try await destination.query("SELECT document_id, issue_id, body FROM document_notes WHERE id = \(note)").first)
            #expect(row["document_id"].int64 == map["documents"]?[2])
            #expect(row["issue_id"].int64 == map["issues"]?[5])
            #expect(row["body"].string == "note on 2")
            let reply = try #require(map["note_replies"]?[1])
            #expect(try await destination.query("SELECT note_id FROM note_replies WHERE id = \(reply)").first?["note_id"].int64 == note)
            let document = try #require(map["documents"]?[2])
            #expect(try await destination.query("SELECT review_note FROM documents WHERE id = \(document)").first?["review_note"].string == "look at page 2")
            await source.close()
            await destination.close()
        }
    }

    @Test("selection by label and by folder", arguments: Backend.allCases)
    func selectionByLabelAndFolder(backend: Backend) async throws {
        try await withCaseDatabases(backend) { databases in
            try await seedPair(databases, source: 251, destination: 252)
            let source = try await TestCaseConnection.open(databases, caseID: 251)
            let destination = try await TestCaseConnection.open(databases, caseID: 252)
            let copier = CaseDataCopier(databases: databases)
            let label: Int64 = 3
            let labelled = try await source.ids("SELECT document_id FROM label_category_labels WHERE label_id = \(label)")
            #expect(!labelled.isEmpty)
            let byLabel = try await copier.copy(sourceCase: 251, destinationCase: 252, selection: .labelID(label), jobID: "by-label")
            #expect(Set(byLabel.documents.map(\.sourceDocumentID)) == labelled)
            try await verifyExactCopy(source: source, destination: destination, job: "by-label", documents: labelled)
            let folder: Int64 = 2
            let foldered = try await source.ids("SELECT document_id FROM folder_taggings WHERE folder_tag_id = \(folder)")
            #expect(!foldered.isEmpty)
            let byFolder = try await copier.copy(sourceCase: 251, destinationCase: 252, selection: .folderID(folder), jobID: "by-folder")
            #expect(Set(byFolder.documents.map(\.sourceDocumentID)) == foldered)
            try await verifyExactCopy(source: source, destination: destination, job: "by-folder", documents: foldered)
            // An unknown label selects nothing and copies nothing.
            let none = try await copier.copy(sourceCase: 251, destinationCase: 252, selection: .labelID(987_654), jobID: "nothing")
            #expect(none.documents.isEmpty && none.insertedRows == 0)
            await source.close()
            await destination.close()
        }
    }

    @Test("bad arguments and missing cases are reported", arguments: Backend.allCases)
    func errors(backend: Backend) async throws {
        try await withCaseDatabases(backend) { databases in
            let copier = CaseDataCopier(databases: databases)
            await #expect(throws: CaseDataError.self) { try await copier.copy(sourceCase: 1, destinationCase: 1, selection: .labelID(1), jobID: "x") }
            await #expect(throws: CaseDataError.self) { try await copier.copy(sourceCase: 1, destinationCase: 2, selection: .labelID(1), jobID: "") }
            do {
                _ = try await copier.copy(sourceCase: 261, destinationCase: 262, selection: .labelID(1), jobID: "x")
                Issue.record("a missing case database must fail")
            } catch let error as CaseDataError {
                #expect(error.code == .notFound)
            }
        }
    }
}

@Suite("exchanger case")
struct CaseCommandTests {
    @Test("exchanger case seed creates, seeds and writes each document's files", arguments: Backend.allCases)
    func seedThroughCLI(backend: Backend) async throws {
        try await withCaseDatabases(backend) { databases in
            try await withTemporaryDirectory { directory in
                let environment = [
                    "EXCHANGER_CASE_DATABASE_URL": databases.locator.template, "EXCHANGER_CASE_DATABASE_PREFIX": databases.locator.prefix,
                ]
                let storage = "file://" + directory.path
                let run = try await runExchanger(["case", "seed", "--case", "271", "--documents", "12", "--storage", storage], environment: environment)
                #expect(run.status == 0)
                let line = try #require(run.output.split(separator: "\n").last { $0.contains("\"caseID\"") })
                let summary = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                #expect(summary["documents"] as? Int == 12)
                #expect(summary["objects"] as? Int == 36)
                #expect((summary["rows"] as? [String: Int])?["documents"] == 12)
                #expect((summary["rows"] as? [String: Int])?.values.reduce(0, +) ?? 0 >= 12 * 20)
                for document in 1...12 {
                    let folder = directory.appendingPathComponent("case_271/documents/\(document)")
                    let pdf = try Data(contentsOf: folder.appendingPathComponent("\(document).pdf"))
                    #expect(pdf.starts(with: Data("%PDF-1.4".utf8)))
                    #expect(String(decoding: pdf.suffix(6), as: UTF8.self) == "%%EOF\n")
                    #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent("\(document).txt").path))
                    let files = try FileManager.default.contentsOfDirectory(atPath: folder.path)
                    #expect(files.count == 3)
                }
                let create = try await runExchanger(["case", "create", "--case", "271"], environment: environment)
                #expect(create.status == 0)
                #expect(create.output.contains("\"appliedMigrations\":[]"))
                let again = try await runExchanger(["case", "seed", "--case", "271", "--documents", "3"], environment: environment)
                #expect(again.status == 1)

                // --annotations: every document in the (local) document engine with the seven kinds and a thread.
                let annotated = try await runExchanger(
                    ["case", "seed", "--case", "272", "--documents", "4", "--storage", storage, "--annotations"], environment: environment)
                #expect(annotated.status == 0, "\(annotated.output)")
                let engineRoot = directory.appendingPathComponent("document-engine")
                let engineDocuments = try FileManager.default.contentsOfDirectory(atPath: engineRoot.path).filter { $0.hasPrefix("document_272_") }
                #expect(engineDocuments.count == 4)
                for name in engineDocuments {
                    #expect(name.split(separator: "_").count == 5 && !name.hasSuffix("_0"), "\(name): batch and exhibit in the id")
                    let ndjson = try String(contentsOf: engineRoot.appendingPathComponent("\(name)/annotations.ndjson"), encoding: .utf8)
                    #expect(ndjson.split(separator: "\n").count == 7)
                    for type in ["pspdfkit/markup/redaction", "pspdfkit/markup/highlight", "pspdfkit/note", "pspdfkit/image", "bates_stamp", "confidentiality_stamp", "isCommentThreadRoot"] {
                        #expect(ndjson.contains(type), "\(name) has \(type)")
                    }
                    #expect(FileManager.default.fileExists(atPath: engineRoot.appendingPathComponent("\(name)/comments.json").path))
                    #expect(try FileManager.default.contentsOfDirectory(atPath: engineRoot.appendingPathComponent("\(name)/attachments").path).count == 1)
                }
            }
        }
    }
}

/// A counter shared with a hook.
actor Counter {
    private var value = 0
    func increment() -> Int {
        value += 1
        return value
    }
}
