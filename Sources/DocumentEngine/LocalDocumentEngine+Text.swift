import Foundation
import ObjectStorage

/// Page text of the local engine: extracted from the stored PDF by ``PDFTextExtractor`` and cached
/// next to the document, so only the first call parses the PDF.
///
/// The cache is `{prefix}/{engineDocumentId}/text/pages.json` (``PageTextCache``), tied to the
/// SHA-256 of the PDF it was extracted from: a document re-ingested with another PDF is parsed
/// again, and deleting the document deletes its cache with it.
extension LocalDocumentEngine {
    public func pageCount(_ id: EngineDocumentID) async throws -> Int {
        try await pageTexts(id).count
    }

    public func pageText(_ id: EngineDocumentID, pageIndex: Int) async throws -> String {
        let pages = try await pageTexts(id)
        guard pages.indices.contains(pageIndex) else {
            throw DocumentEngineError(.notFound, "document \(id) has \(pages.count) page(s); there is no page index \(pageIndex)")
        }
        return pages[pageIndex]
    }

    /// Every page's text, from the cache when it matches the document's PDF, else extracted (and cached).
    func pageTexts(_ id: EngineDocumentID) async throws -> [String] {
        let info = try await info(id)
        let cacheKey: ObjectKey
        do {
            cacheKey = try DocumentEngineKeys.pageTexts(id, prefix: settings.prefix)
        } catch {
            throw DocumentEngineError(.permanent, "no valid key: \(error.message)")
        }
        if let cached = try await readCache(cacheKey, id: id), cached.pdfSHA256 == info.sha256 {
            return cached.pages
        }
        let pdf = try await document(id)
        let pages: [String]
        do {
            pages = try PDFTextExtractor().pageTexts(of: pdf)
        } catch {
            throw DocumentEngineError(.permanent, "cannot extract the text of \(id): \(error.message)")
        }
        let cache = PageTextCache(pdfSHA256: info.sha256, pages: pages)
        let data: Data
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            data = try encoder.encode(cache)
        } catch {
            throw DocumentEngineError(.permanent, "cannot encode the page texts of \(id): \(error)")
        }
        do {
            try await store.put(cacheKey, data, contentType: "application/json")
        } catch let error as ObjectStorageError {
            throw DocumentEngineError.storage(error, "write the page texts of \(id)")
        }
        return pages
    }

    private func readCache(_ key: ObjectKey, id: EngineDocumentID) async throws -> PageTextCache? {
        let data: Data
        do {
            data = try await store.get(key)
        } catch let error as ObjectStorageError where error.code == .notFound {
            return nil
        } catch let error as ObjectStorageError {
            throw DocumentEngineError.storage(error, "read the page texts of \(id)")
        }
        // A damaged or older cache is rebuilt, never trusted.
        guard let cache = try? JSONDecoder().decode(PageTextCache.self, from: data), cache.version == PageTextCache.currentVersion else {
            return nil
        }
        return cache
    }
}

/// The local engine's cache of one document's page texts (`text/pages.json`).
struct PageTextCache: Sendable, Hashable, Codable {
    static let currentVersion = 1
    var version: Int = currentVersion
    /// The SHA-256 of the PDF the texts were extracted from.
    var pdfSHA256: String
    /// Each page's text lines joined by "\n", in page order.
    var pages: [String]

    enum CodingKeys: String, CodingKey { case version, pdfSHA256 = "pdfSha256", pages }

    init(pdfSHA256: String, pages: [String]) {
        self.pdfSHA256 = pdfSHA256
        self.pages = pages
    }
}

extension DocumentEngineKeys {
    /// `{prefix}/{engineDocumentId}/text/pages.json`: the local engine's cache of a document's page texts.
    public static func pageTexts(_ id: EngineDocumentID, prefix: String = defaultPrefix) throws(ObjectStorageError) -> ObjectKey {
        try ObjectKey(documentPrefix(id, prefix: prefix) + "text/pages.json")
    }
}
