import Foundation
import Logging
import NIOCore
import NIOFoundationCompat

extension S3ObjectStore {
    /// Copies a large object in parts: CreateMultipartUpload, UploadPartCopy with
    /// `x-amz-copy-source-range` for each ``S3Configuration/multipartPartSize`` slice (up to
    /// ``S3Configuration/multipartConcurrency`` at once), CompleteMultipartUpload. Any failure
    /// aborts the upload, so no orphaned parts are left behind.
    func multipartCopy(from source: ObjectKey, size: Int64, contentType: String?, to destination: ObjectKey) async throws -> ObjectInfo {
        let operation = "multipart copy \(source) → \(destination)"
        let uploadID = try await createMultipartUpload(destination, contentType: contentType, operation: operation)
        logger.debug("multipart copy started", metadata: ["source": "\(source)", "destination": "\(destination)", "uploadId": "\(uploadID)"])
        do {
            let partSize = configuration.multipartPartSize
            let partCount = Int((size + partSize - 1) / partSize)
            var etags = [String](repeating: "", count: partCount)
            try await withThrowingTaskGroup(of: (Int, String).self) { group in
                var next = 0
                func addPart() {
                    let number = next + 1
                    let first = Int64(next) * partSize
                    let last = min(first + partSize, size) - 1
                    next += 1
                    group.addTask {
                        let etag = try await self.uploadPartCopy(
                            source: source, destination: destination, uploadID: uploadID, partNumber: number, range: first...last,
                            operation: operation)
                        return (number, etag)
                    }
                }
                while next < min(configuration.multipartConcurrency, partCount) { addPart() }
                while let (number, etag) = try await group.next() {
                    etags[number - 1] = etag
                    if next < partCount { addPart() }
                }
            }
            let result = try await completeMultipartUpload(destination, uploadID: uploadID, etags: etags, operation: operation)
            return ObjectInfo(key: destination, size: size, etag: result.etag, lastModified: result.lastModified)
        } catch {
            do {
                _ = try await send(
                    S3Request(method: .DELETE, key: fullKey(destination), query: [("uploadId", uploadID)]), operation: "abort \(operation)")
            } catch let abortError {
                logger.warning(
                    "could not abort a failed multipart copy",
                    metadata: ["uploadId": "\(uploadID)", "destination": "\(destination)", "error": "\(abortError)"])
            }
            throw error
        }
    }

    private func createMultipartUpload(_ destination: ObjectKey, contentType: String?, operation: String) async throws -> String {
        var request = S3Request(method: .POST, key: fullKey(destination), query: [("uploads", "")])
        if let contentType { request.headers.append(("Content-Type", contentType)) }
        let response = try await send(request, operation: "create \(operation)")
        guard let root = S3XMLNode.parse(Data(buffer: response.body)), root.name == "InitiateMultipartUploadResult",
            let uploadID = root.value("UploadId"), !uploadID.isEmpty
        else {
            throw ObjectStorageError(.failed, "\(operation): CreateMultipartUpload returned no UploadId: \(S3XMLText.snippet(Data(buffer: response.body)))")
        }
        return uploadID
    }

    private func uploadPartCopy(
        source: ObjectKey, destination: ObjectKey, uploadID: String, partNumber: Int, range: ClosedRange<Int64>, operation: String
    ) async throws -> String {
        let request = S3Request(
            method: .PUT, key: fullKey(destination), query: [("partNumber", String(partNumber)), ("uploadId", uploadID)],
            headers: [
                ("x-amz-copy-source", copySource(source)),
                ("x-amz-copy-source-range", "bytes=\(range.lowerBound)-\(range.upperBound)"),
            ])
        let part = "part \(partNumber) of \(operation)"
        let result = try await withRetries(operation: part) { _ in
            let response = try await self.execute(request, operation: part, deadline: nil)
            let body = try await response.body.collect(upTo: Self.maxResponseBody)
            return try S3CopyResult.parse(Data(buffer: body))
        }
        guard let etag = result.etag, !etag.isEmpty else { throw ObjectStorageError(.failed, "\(part): no ETag in CopyPartResult") }
        return etag
    }

    private func completeMultipartUpload(_ destination: ObjectKey, uploadID: String, etags: [String], operation: String) async throws
        -> S3CopyResult
    {
        var xml = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        for (index, etag) in etags.enumerated() {
            xml += "<Part><PartNumber>\(index + 1)</PartNumber><ETag>\(S3XMLText.escape("\"" + etag + "\""))</ETag></Part>"
        }
        xml += "</CompleteMultipartUpload>"
        let request = S3Request(
            method: .POST, key: fullKey(destination), query: [("uploadId", uploadID)], headers: [("Content-Type", "application/xml")],
            body: .data(Data(xml.utf8)))
        let complete = "complete \(operation)"
        return try await withRetries(operation: complete) { _ in
            let response = try await self.execute(request, operation: complete, deadline: nil)
            let body = Data(buffer: try await response.body.collect(upTo: Self.maxResponseBody))
            // Like CopyObject, CompleteMultipartUpload can answer 200 with an <Error> body.
            guard let root = S3XMLNode.parse(body) else {
                throw ObjectStorageError(.transient, "\(complete): answered 200 with a body that is not XML", status: 200)
            }
            if root.name == "Error" {
                throw S3ErrorClassifier.error(
                    status: 200, document: S3ErrorDocument(code: root.value("Code") ?? "", message: root.value("Message") ?? ""),
                    operation: complete)
            }
            return S3CopyResult(etag: root.value("ETag").map(S3XMLText.unquote), lastModified: nil)
        }
    }
}
