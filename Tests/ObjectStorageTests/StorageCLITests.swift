import ExchangerTestSupport
import Foundation
import Testing

@Suite struct StorageCLITests {
    /// `exchanger storage put/ls/get/cp/rm` on file:// URLs, as a separate process.
    @Test func putListGetCopyRemove() async throws {
        try await withTempDirectory { directory in
            let exchanger = TestEnvironment.exchanger
            let input = directory + "/input.txt"
            try Data("hello storage\n".utf8).write(to: URL(fileURLWithPath: input))
            let object = "file://\(directory)/store/case_1/a b+c.txt"

            var (status, output) = try await run(exchanger, ["storage", "put", object, "--file", input])
            #expect(status == 0, "put: \(output)")
            (status, output) = try await run(exchanger, ["storage", "cp", object, "file://\(directory)/store/case_1/copy.txt"])
            #expect(status == 0, "cp: \(output)")
            (status, output) = try await run(exchanger, ["storage", "ls", "file://\(directory)/store"])
            #expect(status == 0)
            #expect(output == "case_1/a b+c.txt\t14\ncase_1/copy.txt\t14\n")
            (status, output) = try await run(exchanger, ["storage", "get", "file://\(directory)/store/case_1/copy.txt"])
            #expect(status == 0 && output == "hello storage\n")
            (status, _) = try await run(exchanger, ["storage", "get", object, "--file", directory + "/out.txt"])
            #expect(status == 0)
            #expect(try String(contentsOfFile: directory + "/out.txt", encoding: .utf8) == "hello storage\n")
            (status, _) = try await run(exchanger, ["storage", "rm", object])
            #expect(status == 0)
            (status, output) = try await run(exchanger, ["storage", "ls", "file://\(directory)/store/case_1/co"])
            #expect(status == 0 && output == "copy.txt\t14\n")
            (status, _) = try await run(exchanger, ["storage", "get", object])
            #expect(status != 0, "a missing object is an error")
            (status, _) = try await run(exchanger, ["storage", "ls", "ftp://nowhere"])
            #expect(status != 0, "a bad URL is an error")
        }
    }
}
