import ExchangerEvents
import Foundation
import Orchestrator
import Testing

@Suite("document ids of the full 64-bit range")
struct LargeDocumentIDTests {
    static let base = #""sourceCaseId": 41, "destinationCaseId": 42, "batchId": 7"#

    @Test("documentIds accepts decimal strings up to Int64.max, exactly")
    func decimalStrings() throws {
        let body = #"{\#(Self.base), "documentIds": ["9007199254740993", 5, "9223372036854775807"]}"#
        let request = try ExchangeRequest.parse(Data(body.utf8))
        #expect(request.selection == .documents([9_007_199_254_740_993, 5, Int64.max]))
        // Stored and read back exactly (the large ids as strings again).
        let data = try EventCoding.encoder.encode(request)
        #expect(try EventCoding.decoder.decode(ExchangeRequest.self, from: data) == request)
        #expect(String(decoding: data, as: UTF8.self).contains(#""documentIds":["9007199254740993",5,"9223372036854775807"]"#))
    }

    @Test("a JSON number of 2^53 or more is refused (it arrived rounded), as are malformed strings",
          arguments: [
            (#"[9007199254740993]"#, "send this id as a decimal string"),
            (#"["0"]"#, "decimal string"), (#"["-4"]"#, "decimal string"), (#"["1e3"]"#, "decimal string"),
            (#"["12a"]"#, "decimal string"), (#"[" 7"]"#, "decimal string"), (#"["9223372036854775808"]"#, "decimal string"),
          ])
    func refused(ids: String, reason: String) throws {
        let body = #"{\#(Self.base), "documentIds": \#(ids)}"#
        do {
            _ = try ExchangeRequest.parse(Data(body.utf8))
            Issue.record("\(ids) was accepted")
        } catch {
            #expect(error.field == "documentIds[0]")
            #expect(error.message.contains(reason), "\(error.message)")
        }
    }
}
