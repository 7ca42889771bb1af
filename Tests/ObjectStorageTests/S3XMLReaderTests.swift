import Foundation
import Testing

@testable import ObjectStorage

/// The small XML reader that replaced Foundation's XMLParser for S3 answers.
@Suite struct S3XMLReaderTests {
    @Test func readsWhatS3Sends() throws {
        let root = try #require(S3XMLNode.parse(Data("""
            \u{FEFF}<?xml version="1.0" encoding="UTF-8"?>
            <!-- a comment -->
            <s3:InitiateMultipartUploadResult xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/" a='x>y'>
              <s3:Bucket>b</s3:Bucket><Key>k &#38; &#x3C;1&#x3e; &apos;q&apos;</Key>
              <UploadId><![CDATA[id<&>]]></UploadId><Empty/><Empty2 attr="1" />
            </s3:InitiateMultipartUploadResult>
            """.utf8)))
        #expect(root.name == "InitiateMultipartUploadResult")
        #expect(root.value("Bucket") == "b")
        #expect(root.value("Key") == "k & <1> 'q'")
        #expect(root.value("UploadId") == "id<&>")
        #expect(root.child("Empty")?.text == "")
        #expect(root.child("Empty2") != nil)
        #expect(root.children.map(\.name) == ["Bucket", "Key", "UploadId", "Empty", "Empty2"])
        #expect(S3XMLNode.parse(Data("<a>ü €</a>".utf8))?.text == "ü €")
        #expect(S3XMLNode.parse(Data("<a/>".utf8))?.name == "a")
    }

    @Test(arguments: [
        "", "not xml", "<a>", "<a></b>", "<a><b></a></b>", "<a></a><b></b>", "text<a></a>", "<a>&unknown;</a>", "<a>&amp</a>",
        "<a b></a>", "<a b=\"1></a>", "<!-- open", "<a><![CDATA[x</a>", "<a>&#xD800;</a>",
    ])
    func rejectsWhatIsNotWellFormed(_ text: String) {
        #expect(S3XMLNode.parse(Data(text.utf8)) == nil, "\(text)")
    }
}
