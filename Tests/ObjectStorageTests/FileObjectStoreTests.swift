import ExchangerTestSupport
import Foundation
import Testing

@testable import ObjectStorage

@Suite struct FileObjectStoreTests {
    @Test func putGetHeadCopyListDelete() async throws {
        try await withTempDirectory { directory in
            let store = try await ObjectStorage.open("file://" + directory)
            let data = testBytes(3 * FileObjectStore.chunkSize + 17)
            for raw in AwkwardKeys.file {
                let key = try ObjectKey(raw)
                try await store.put(key, data, contentType: "application/pdf")
                #expect(try await store.get(key) == data)
                #expect(try await store.head(key).size == Int64(data.count))
                #expect(try await collect(try await store.stream(key)) == data)
                #expect(FileManager.default.fileExists(atPath: directory + "/" + raw), "\(raw) is stored under its own name")
                let copy = try key.appending("copy")
                await expectStorageError(.failed) { try await store.copy(from: key, to: copy) }  // `key` is a file, not a directory
                let sibling = try ObjectKey(raw + ".copy")
                let info = try await store.copy(from: key, to: sibling)
                #expect(info.size == Int64(data.count) && info.key == sibling)
                #expect(try await store.get(sibling) == data)
            }
            let listed = try await collect(store.list(prefix: "")).map(\.key.rawValue)
            let expected = (AwkwardKeys.file + AwkwardKeys.file.map { $0 + ".copy" }).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            #expect(listed == expected)
            #expect(try await collect(store.list(prefix: "plus+")).map(\.key.rawValue) == ["plus+sign/a+b.pdf", "plus+sign/a+b.pdf.copy"])
            #expect(try await collect(store.list(prefix: "unicode/ünï")).count == 2)
            #expect(try await collect(store.list(prefix: "nothing/here")).isEmpty)
            for raw in expected { try await store.delete(try ObjectKey(raw)) }
            #expect(try await collect(store.list(prefix: "")).isEmpty)
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty, "empty directories are removed")
            try await store.shutdown()
        }
    }

    /// Links planted in the store never lead outside it: not through a directory, not as an object,
    /// not in a listing.
    @Test func symbolicLinksAreNotFollowed() async throws {
        try await withTempDirectory { outside in
            try await withTempDirectory { directory in
                try Data("secret".utf8).write(to: URL(fileURLWithPath: outside + "/secret.txt"))
                try FileManager.default.createSymbolicLink(atPath: directory + "/evil", withDestinationPath: outside)
                try FileManager.default.createSymbolicLink(atPath: directory + "/link.pdf", withDestinationPath: outside + "/secret.txt")
                let store = try await ObjectStorage.open("file://" + directory)
                await expectStorageError(.accessDenied) { _ = try await store.get(try ObjectKey("evil/secret.txt")) }
                await expectStorageError(.accessDenied) { try await store.put(try ObjectKey("evil/new.txt"), Data("x".utf8)) }
                await expectStorageError(.accessDenied) { try await store.delete(try ObjectKey("evil/secret.txt")) }
                await expectStorageError(.accessDenied) { _ = try await store.get(try ObjectKey("link.pdf")) }
                await expectStorageError(.accessDenied) { _ = try await store.head(try ObjectKey("link.pdf")) }
                await expectStorageError(.accessDenied) {
                    _ = try await store.copy(from: try ObjectKey("link.pdf"), to: try ObjectKey("copied.pdf"))
                }
                #expect(!FileManager.default.fileExists(atPath: outside + "/new.txt"), "nothing written outside the root")
                #expect(try String(contentsOfFile: outside + "/secret.txt", encoding: .utf8) == "secret", "nothing deleted or changed outside")
                try await store.put(try ObjectKey("real/file.pdf"), Data("ok".utf8))
                #expect(try await collect(store.list(prefix: "")).map(\.key.rawValue) == ["real/file.pdf"], "links are not listed")
                try await store.shutdown()
            }
        }
    }

    /// A full disk is transient (the document waits for room), never a permanent failure. The
    /// disk is a real 64 KiB tmpfs (the tests run as root, as CI does); no mount is a failure.
    @Test func aFullDiskIsTransient() async throws {
        try await withTempDirectory { directory in
            let mount = Process()
            mount.executableURL = URL(fileURLWithPath: "/bin/mount")
            mount.arguments = ["-t", "tmpfs", "-o", "size=64k", "tmpfs", directory]
            try mount.run()
            mount.waitUntilExit()
            try #require(mount.terminationStatus == 0, "mounting a 64 KiB tmpfs needs root (CI runs as root)")
            defer {
                let unmount = Process()
                unmount.executableURL = URL(fileURLWithPath: "/bin/umount")
                unmount.arguments = [directory]
                try? unmount.run()
                unmount.waitUntilExit()
            }
            let store = try await ObjectStorage.open("file://" + directory)
            do {
                try await store.put(try ObjectKey("big/document.pdf"), testBytes(512 * 1024))
                Issue.record("512 KiB fit on a 64 KiB disk")
            } catch let error as ObjectStorageError {
                #expect(error.code == .transient && error.isTransient, "\(error)")
                #expect(error.message.contains("No space left"), "\(error)")
            }
            #expect(try await collect(store.list(prefix: "")).isEmpty, "no partial object is left")
            try await store.shutdown()
        }
    }

    @Test func notFoundIsTyped() async throws {
        try await withTempDirectory { directory in
            let store = FileObjectStore(directory: directory)
            let missing = try ObjectKey("no/such/object")
            await expectStorageError(.notFound) { try await store.head(missing) }
            await expectStorageError(.notFound) { try await store.get(missing) }
            await expectStorageError(.notFound) { try await store.stream(missing) }
            await expectStorageError(.notFound) { try await store.copy(from: missing, to: try ObjectKey("x")) }
            await expectStorageError(.notFound) { try await store.download(missing, to: directory + "/out") }
            try await store.delete(missing)  // fine
            try await store.put(try ObjectKey("dir/file"), Data("x".utf8))
            await expectStorageError(.notFound) { try await store.get(try ObjectKey("dir")) }  // a directory is not an object
            await expectStorageError(.notFound) { try await store.get(try ObjectKey("dir/file/below")) }
            #expect(try await !store.exists(missing))
            #expect(try await store.exists(try ObjectKey("dir/file")))
            await expectStorageError(.invalidKey) { try await store.put(try ObjectKey("a/.exchanger-tmp-x"), Data()) }
        }
    }

    @Test func uploadDownloadAndOverwrite() async throws {
        try await withTempDirectory { directory in
            let store = FileObjectStore(directory: directory + "/store")
            let source = directory + "/source.bin"
            let data = testBytes(5 << 20)
            try data.write(to: URL(fileURLWithPath: source))
            let key = try ObjectKey("case_1/documents/2/big file.bin")
            try await store.upload(file: source, to: key, contentType: nil)
            #expect(try await store.get(key) == data)
            try await store.download(key, to: directory + "/out/sub/copy.bin")
            #expect(try Data(contentsOf: URL(fileURLWithPath: directory + "/out/sub/copy.bin")) == data)
            try await store.put(key, Data("small".utf8))
            #expect(try await store.get(key) == Data("small".utf8))
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory + "/out/sub") == ["copy.bin"], "no temp file left")
            await expectStorageError(.notFound) { try await store.upload(file: directory + "/missing", to: key, contentType: nil) }
        }
    }

    /// Readers never see a partial object and listings never show temp files, while writers
    /// rewrite the same keys concurrently.
    @Test func concurrentPutsAreAtomic() async throws {
        try await withTempDirectory { directory in
            let store = FileObjectStore(directory: directory)
            let versions = (0..<4).map { testBytes(256 << 10, seed: UInt64($0)) }
            let keys = try (0..<4).map { try ObjectKey("shared/key-\($0).bin") }
            for key in keys { try await store.put(key, versions[0]) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for writer in 0..<8 {
                    group.addTask {
                        for round in 0..<10 { try await store.put(keys[(writer + round) % keys.count], versions[(writer + round) % versions.count]) }
                    }
                }
                group.addTask {
                    for _ in 0..<30 {
                        let listed = try await collect(store.list(prefix: "shared/")).map(\.key)
                        #expect(listed == keys, "only the objects, never a temp file")
                        for key in keys {
                            let data = try await store.get(key)
                            #expect(versions.contains(data), "a whole version, never a part")
                        }
                    }
                }
                try await group.waitForAll()
            }
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory + "/shared").filter { $0.hasPrefix(".exchanger-tmp-") }
            #expect(leftovers.isEmpty)
        }
    }

    @Test func tempFilesAreNeverListed() async throws {
        try await withTempDirectory { directory in
            let store = FileObjectStore(directory: directory)
            try await store.put(try ObjectKey("a/b.txt"), Data("b".utf8))
            // A writer that crashed mid-write leaves a temp file behind.
            try Data("partial".utf8).write(to: URL(fileURLWithPath: directory + "/a/.exchanger-tmp-dead"))
            #expect(try await collect(store.list(prefix: "")).map(\.key.rawValue) == ["a/b.txt"])
            #expect(try await collect(store.list(prefix: "a/.exch")).isEmpty)
        }
    }
}
