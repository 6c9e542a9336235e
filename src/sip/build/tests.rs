use super::*;
use crate::sip::message::scan;
use crate::sip::msg::Message;
use crate::sip::view::View;
use bytes::Bytes;

fn dest() -> SocketAddr {
    "192.0.2.50:5070".parse().unwrap()
}

fn request<'a>(routes: &'a [String], body: Option<(&'a str, &'a [u8])>) -> OutRequest<'a> {
    OutRequest {
        method: "INVITE",
        uri: "sip:agent@192.0.2.50:5070;transport=udp",
        dest: dest(),
        transport: crate::sip::Transport::Udp,
        routes,
        from: "\"Support\" <sip:support@192.0.2.1>",
        to: "<sip:agent@192.0.2.50>",
        call_id: "c1@192.0.2.1",
        cseq: 3,
        contact: Some("sip:support@192.0.2.1:5060"),
        body,
    }
}

#[test]
fn built_request_scans_back_to_the_same_fields() {
    let routes = vec!["<sip:p1;lr>".to_owned(), "<sip:p2;lr>".to_owned()];
    let sdp = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n";
    let req = request(&routes, Some(("application/sdp", sdp)));
    let via = ViaOut { sent_by: "192.0.2.1:5060".parse().unwrap(), branch: "z9hG4bK-cc0-7" };
    let (data, key) = write_request(&req, via, || "t1".to_owned());
    let m = Message::parse(Bytes::from(data.clone())).unwrap();
    assert_eq!(m.method(), Some("INVITE"));
    assert_eq!(m.request_uri(), Some(req.uri));
    let top = m.top_via().unwrap();
    assert_eq!((top.sent_by, top.branch, top.rport), ("192.0.2.1:5060", Some("z9hG4bK-cc0-7"), true));
    assert_eq!(m.via_values().count(), 1);
    assert_eq!(m.max_forwards(), Some(Ok(70)));
    assert_eq!(m.route().collect::<Vec<_>>(), vec!["<sip:p1;lr>", "<sip:p2;lr>"]);
    assert_eq!(m.from_tag(), Some("t1"));
    assert_eq!(m.to(), Some(req.to));
    assert_eq!(m.call_id(), Some(req.call_id));
    assert_eq!(m.cseq(), Some(Ok((3, "INVITE"))));
    assert_eq!(m.contact_uri(), req.contact);
    assert_eq!(m.content_type(), Some("application/sdp"));
    assert_eq!(m.body(), sdp);
    // rsip, which validates what peers send, accepts it too.
    assert!(rsip::Request::try_from(data.as_slice()).is_ok());
    // The key is the one the transaction layer reads from the bytes.
    let from_bytes = ClientKey::of(&scan(&data).unwrap()).unwrap();
    assert_eq!(key, from_bytes);
    assert_eq!((key.branch.as_str(), key.method.as_str()), ("z9hG4bK-cc0-7", "INVITE"));
}

#[test]
fn a_from_with_a_tag_keeps_it_and_no_body_means_length_zero() {
    let mut req = request(&[], None);
    req.method = "BYE";
    req.contact = None;
    req.from = "<sip:support@192.0.2.1>;tag=ours";
    let via = ViaOut { sent_by: "192.0.2.1:5060".parse().unwrap(), branch: "z9hG4bK-b" };
    let (data, key) = write_request(&req, via, || panic!("a tag was there"));
    let text = std::str::from_utf8(&data).unwrap();
    assert!(text.ends_with("CSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n"), "{text}");
    let m = scan(&data).unwrap();
    assert_eq!(m.from_tag(), Some("ours"));
    assert_eq!(m.header("contact"), None);
    assert_eq!(m.header("route"), None);
    assert_eq!(ClientKey::of(&m), Some(key));
}

#[test]
fn the_via_names_the_transport() {
    let mut req = request(&[], None);
    req.transport = crate::sip::Transport::Tcp;
    let (data, _) = write_request(&req, ViaOut { sent_by: "192.0.2.1:5060".parse().unwrap(), branch: "z9hG4bKb" }, || "t".into());
    let text = String::from_utf8(data).unwrap();
    assert!(text.contains("\r\nVia: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKb;rport\r\n"), "{text}");
}
