import Crypto
import Foundation
import ObjectStorage
import Orchestrator

extension ExchangeVerifier {
    struct FileCheckOutcome: Sendable {
        var files: Int
        var bytes: Int64
    }

    /// The size and SHA-256 of one object, streamed; nil when it does not exist.
    struct ObjectDigest: Sendable, Hashable {
        var size: Int64
        var sha256: String
    }

    /// The result of comparing one file pair.
    private enum FileResult: Sendable {
        case same(bytes: Int64)
        case problem(String, bytes: Int64)
    }

    /// Compares every expected file of the copied documents (not the not-found ones), at most
    /// ``Settings/fileConcurrency`` at a time.
    func checkFiles(record: ExchangeRecord, files: [ExpectedFile], notFound: Set<Int64>, problems: inout ProblemList) async throws
        -> FileCheckOutcome
    {
        let pairs = files.filter { !notFound.contains($0.destinationDocumentID) }
        let sourceCase = record.sourceCaseID
        let destinationCase = record.destinationCaseID
        let store = self.store
        var outcome = FileCheckOutcome(files: 0, bytes: 0)
        var results: [(Int, FileResult)] = []
        try await withThrowingTaskGroup(of: (Int, FileResult).self) { group in
            var next = 0
            func start() {
                guard next < pairs.count else { return }
                let index = next
                let file = pairs[index]
                next += 1
                group.addTask {
                    (index, try await Self.compare(file, sourceCase: sourceCase, destinationCase: destinationCase, store: store))
                }
            }
            for _ in 0..<settings.fileConcurrency { start() }
            while let result = try await group.next() {
                results.append(result)
                start()
            }
        }
        for (_, result) in results.sorted(by: { $0.0 < $1.0 }) {
            outcome.files += 1
            switch result {
            case .same(let bytes): outcome.bytes += bytes
            case .problem(let problem, let bytes):
                outcome.bytes += bytes
                problems.add(problem)
            }
        }
        return outcome
    }

    private static func compare(_ file: ExpectedFile, sourceCase: Int64, destinationCase: Int64, store: any ObjectStore) async throws
        -> FileResult
    {
        let sourceKey: ObjectKey
        let destinationKey: ObjectKey
        do {
            sourceKey = try CaseKeys.documentFile(caseID: sourceCase, documentID: file.sourceDocumentID, fileName: file.name)
            destinationKey = try CaseKeys.documentFile(caseID: destinationCase, documentID: file.destinationDocumentID, fileName: file.name)
        } catch {
            return .problem("document \(file.destinationDocumentID) (source \(file.sourceDocumentID)): file name '\(file.name)' makes no valid key: \(error)", bytes: 0)
        }
        // Every storage error is a problem of this file (a key the store refuses, a read that
        // fails), never the end of the verification.
        let destinationDigest: ObjectDigest?
        let sourceDigest: ObjectDigest?
        do {
            destinationDigest = try await digest(destinationKey, store: store)
        } catch let error as CancellationError {
            throw error
        } catch {
            return .problem("file \(destinationKey) (\(file.variant) of document \(file.destinationDocumentID), source \(file.sourceDocumentID)) cannot be read: \(error)", bytes: 0)
        }
        guard let destination = destinationDigest else {
            return .problem("file \(destinationKey) (\(file.variant) of document \(file.destinationDocumentID), source \(file.sourceDocumentID)) is missing", bytes: 0)
        }
        do {
            sourceDigest = try await digest(sourceKey, store: store)
        } catch let error as CancellationError {
            throw error
        } catch {
            return .problem("source file \(sourceKey) (\(file.variant) of document \(file.sourceDocumentID)) cannot be read: \(error)", bytes: destination.size)
        }
        guard let source = sourceDigest else {
            return .problem("source file \(sourceKey) is missing, but document \(file.sourceDocumentID) was not reported DOCUMENT_NOT_FOUND", bytes: destination.size)
        }
        if source.size != destination.size {
            return .problem("file \(destinationKey) has \(destination.size) bytes, its source \(sourceKey) \(source.size)", bytes: destination.size)
        }
        if source.sha256 != destination.sha256 {
            return .problem("file \(destinationKey) differs from its source \(sourceKey) (SHA-256 \(destination.sha256) ≠ \(source.sha256))", bytes: destination.size)
        }
        return .same(bytes: destination.size)
    }

    /// Streams the object through SHA-256; nil when it does not exist.
    static func digest(_ key: ObjectKey, store: any ObjectStore) async throws -> ObjectDigest? {
        do {
            var hasher = SHA256()
            var size: Int64 = 0
            for try await chunk in try await store.stream(key) {
                hasher.update(data: chunk)
                size += Int64(chunk.count)
            }
            let hex = hasher.finalize().map { byte in String(byte, radix: 16).count == 1 ? "0" + String(byte, radix: 16) : String(byte, radix: 16) }
            return ObjectDigest(size: size, sha256: hex.joined())
        } catch let error as ObjectStorageError where error.code == .notFound {
            return nil
        } catch let error as ObjectStorageError {
            throw ExchangeVerifierError(.storage, "cannot read \(key): \(error)")
        }
    }
}
