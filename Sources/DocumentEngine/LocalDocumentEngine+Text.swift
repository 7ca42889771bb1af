/// Temporary stand-in: the local engine's page count and page text arrive with the re-OCR branch,
/// whose file of this name replaces this one at merge.
extension LocalDocumentEngine {
    public func pageCount(_ id: EngineDocumentID) async throws -> Int {
        throw DocumentEngineError(.unsupported, "the local engine's page count is not in this build")
    }

    public func pageText(_ id: EngineDocumentID, pageIndex: Int) async throws -> String {
        throw DocumentEngineError(.unsupported, "the local engine's page text is not in this build")
    }
}
