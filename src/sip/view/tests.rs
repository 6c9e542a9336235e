use super::*;
use crate::sip::message::scan;
use crate::sip::msg::Message;
use bytes::Bytes;

const INVITE: &str = "INVITE sip:support@192.0.2.1 SIP/2.0\r\n\
    v: SIP/2.0/UDP 192.0.2.9:5070;branch=z9hG4bK-1;rport;received=198.51.100.7, SIP/2.0/UDP [2001:db8::1]:5080;branch=z9hG4bK-0\r\n\
    VIA: SIP/2.0/TCP proxy.example:5060;branch=z9hG4bK-p\r\n\
    Max-Forwards: 70\r\n\
    f: \"Carol, C.\" <sip:carol@example.com>;tag=ft\r\n\
    t: <sip:support@192.0.2.1>\r\n\
    i: cid-1@host\r\n\
    CSeq: 7\r\n INVITE\r\n\
    m: \"A, b\" <sip:carol@192.0.2.9:5070;transport=udp>;expires=30, <sip:c2@h>\r\n\
    Contact: sip:c3@h;expires=5\r\n\
    Record-Route: <sip:p1;lr>, <sip:p2,x;lr>\r\n\
    record-route: <sip:p3;lr>\r\n\
    Route: <sip:r1;lr>\r\n\
    Expires: 120\r\n\
    Authorization: Digest username=\"carol\", realm=\"r\"\r\n\
    Subject: first part\r\n\tsecond part\r\n\
    c: application/sdp\r\n\
    User-Agent: test/1\r\n\
    l: 4\r\n\r\nv=0\nEXTRA";

/// Runs `check` on the borrowed scan and on the owned message: both views
/// must read the same.
fn on_both_views(check: impl Fn(&str, &dyn Fn(&str) -> Option<String>)) {
    let s = scan(INVITE.as_bytes()).unwrap();
    let m = Message::parse(Bytes::from_static(INVITE.as_bytes())).unwrap();
    check("scan", &|h| s.header(h).map(str::to_owned));
    check("owned", &|h| m.header(h).map(str::to_owned));
}

#[test]
fn names_are_case_insensitive_and_compact_forms_match() {
    on_both_views(|which, header| {
        assert_eq!(header("call-id").as_deref(), Some("cid-1@host"), "{which}");
        assert_eq!(header("CALL-ID").as_deref(), Some("cid-1@host"), "{which}");
        assert_eq!(header("content-type").as_deref(), Some("application/sdp"), "{which}");
        assert_eq!(header("user-agent").as_deref(), Some("test/1"), "{which}");
    });
}

fn check_typed<'a>(v: impl View<'a>) {
    assert_eq!(v.method(), Some("INVITE"));
    assert_eq!(v.request_uri(), Some("sip:support@192.0.2.1"));
    assert_eq!(v.status(), None);
    assert_eq!(v.call_id(), Some("cid-1@host"));
    assert_eq!(v.from_tag(), Some("ft"));
    assert_eq!(v.to_tag(), None);
    // A folded CSeq reads as one value.
    assert_eq!(v.cseq(), Some(Ok((7, "INVITE"))));
    assert_eq!(v.cseq_number(), Some(7));
    // Via: three values over two lines (one comma-joined), top first.
    let vias: Vec<_> = v.via_values().collect();
    assert_eq!(vias.len(), 3, "{vias:?}");
    let top = v.top_via().unwrap();
    assert_eq!((top.host, top.port, top.branch), ("192.0.2.9", Some(5070), Some("z9hG4bK-1")));
    assert_eq!((top.sent_by, top.rport, top.received), ("192.0.2.9:5070", true, Some("198.51.100.7")));
    assert_eq!(parse_via(vias[1]).unwrap().host, "2001:db8::1");
    assert_eq!(parse_via(vias[2]).unwrap().protocol, "SIP/2.0/TCP");
    // Contact: three items over two lines, commas in quotes kept.
    let contacts: Vec<_> = v.contacts().collect();
    assert_eq!(
        contacts,
        vec![
            "\"A, b\" <sip:carol@192.0.2.9:5070;transport=udp>;expires=30",
            "<sip:c2@h>",
            "sip:c3@h;expires=5"
        ]
    );
    assert_eq!(v.contact_uri(), Some("sip:carol@192.0.2.9:5070;transport=udp"));
    assert_eq!(param(addr_params(contacts[0]), "expires"), Some("30"));
    assert_eq!(uri_of(contacts[2]), "sip:c3@h");
    // Record-Route over two lines, in order; a comma inside <…> kept.
    let rr: Vec<_> = v.record_route().collect();
    assert_eq!(rr, vec!["<sip:p1;lr>", "<sip:p2,x;lr>", "<sip:p3;lr>"]);
    assert_eq!(v.route().collect::<Vec<_>>(), vec!["<sip:r1;lr>"]);
    assert_eq!(v.expires(), Some(Ok(120)));
    assert_eq!(v.content_type(), Some("application/sdp"));
    assert_eq!(v.authorizations().collect::<Vec<_>>(), vec!["Digest username=\"carol\", realm=\"r\""]);
    // Too few digest fields: sip::auth refuses it.
    assert_eq!(v.credentials().map(|c| c.is_err()).collect::<Vec<_>>(), vec![true]);
    assert_eq!(v.user_agent(), Some("test/1"));
    // A folded value keeps its continuation.
    let subject = v.header("subject").unwrap();
    assert_eq!(subject.split_whitespace().collect::<Vec<_>>(), vec!["first", "part", "second", "part"]);
    // Body cut to Content-Length.
    assert_eq!(v.body(), b"v=0\n");
    assert_eq!(v.content_length(), ContentLength::Ok(4));
    assert!(v.addressable());
}

#[test]
fn typed_accessors_read_the_same_on_scan_and_owned_message() {
    let s = scan(INVITE.as_bytes()).unwrap();
    check_typed(&s);
    let owned = Message::from_scan(&s, INVITE.as_bytes());
    check_typed(&owned);
    let parsed = Message::parse(Bytes::from_static(INVITE.as_bytes())).unwrap();
    check_typed(&parsed);
    // The owned message keeps the message only (cut to Content-Length).
    assert!(owned.as_bytes().ends_with(b"\r\n\r\nv=0\n"));
    assert_eq!(owned, parsed);
}

#[test]
fn responses_and_broken_values() {
    let text = "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@h>;tag=1\r\n\
                To: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: x INVITE\r\nExpires: soon\r\n\r\n";
    let m = Message::parse(Bytes::from(text)).unwrap();
    assert_eq!((m.status(), m.method(), m.request_uri()), (Some(180), None, None));
    assert_eq!(m.to_tag(), Some("2"));
    assert_eq!(m.cseq(), Some(Err(())));
    assert_eq!(m.cseq_number(), None);
    assert_eq!(m.expires(), Some(Err(())));
    assert_eq!(m.contacts().count(), 0);
    assert_eq!(m.contact_uri(), None);
    assert!(!m.addressable());
    assert_eq!(m.to_string(), text);
}

#[test]
fn credentials_are_parsed_by_sip_auth() {
    let text = "REGISTER sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKr\r\nTo: <sip:a@h>\r\n\
                Authorization: Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:h\", \
                response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5\r\n\r\n";
    let m = Message::parse(Bytes::from(text)).unwrap();
    let creds: Vec<_> = m.credentials().collect();
    let [Ok(c)] = &creds[..] else { panic!("{creds:?}") };
    assert_eq!((c.username.as_str(), c.realm.as_str(), c.uri.as_str()), ("a", "r", "sip:h"));
}

#[test]
fn list_items_split_outside_quotes_and_brackets() {
    let items: Vec<_> = ListItems::new(r#" "x\"," <sip:a@h>, , <sip:b@h;p=1,2>;q=0.5,sip:c@h "#).collect();
    assert_eq!(items, vec![r#""x\"," <sip:a@h>"#, "<sip:b@h;p=1,2>;q=0.5", "sip:c@h"]);
    assert_eq!(ListItems::new("").count(), 0);
    assert_eq!(user_of("sip:alice:pw@h"), "alice");
    assert_eq!(user_of("sip:h"), "");
}
