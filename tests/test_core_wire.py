"""The wire protocol byte by byte: JSON-RPC 1.0/2.0, XML-RPC shapes, hostile bodies."""
import json

from serverproc import ROOT_PASSWORD


def jrpc(http, method, params, v2=True, call_id=1):
    body = {"method": method, "params": params, "id": call_id}
    if v2:
        body["jsonrpc"] = "2.0"
    reply = http.post("/jsonrpc", json=body)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    return reply.json()


def login(http, v2=True):
    return jrpc(http, "session.login_with_password", ["root", ROOT_PASSWORD], v2)["result"]


def test_jsonrpc_v2_result_and_error(http):
    session = login(http)
    reply = jrpc(http, "pool.get_all", [session], call_id="abc")
    assert reply["jsonrpc"] == "2.0" and reply["id"] == "abc"
    pool = reply["result"][0]
    host = jrpc(http, "pool.get_master", [session, pool])["result"]
    assert jrpc(http, "host.get_API_version_major", [session, host])["result"] == 2  # a number
    reply = jrpc(http, "VM.get_record", [session, "OpaqueRef:x"], call_id=7)
    assert reply == {"jsonrpc": "2.0", "id": 7,
                     "error": {"code": 1, "message": "HANDLE_INVALID", "data": ["VM", "OpaqueRef:x"]}}
    # Class_message spelling works too.
    assert jrpc(http, "pool_get_all", [session])["result"] == [pool]


def test_jsonrpc_v1(http):
    session = login(http, v2=False)
    reply = jrpc(http, "pool.get_all", [session], v2=False, call_id=3)
    assert reply["error"] is None and reply["id"] == 3 and len(reply["result"]) == 1
    reply = jrpc(http, "VM.get_by_uuid", [session, "zz"], v2=False)
    assert reply["result"] is None and reply["error"] == ["UUID_INVALID", "VM", "zz"]


def test_jsonrpc_malformed(http):
    reply = http.post("/jsonrpc", json={"jsonrpc": "2.0", "method": "pool.get_all", "params": []})
    assert reply.status_code == 500 and "id" in reply.text
    reply = http.post("/jsonrpc", content=b"{not json")
    assert reply.status_code == 500 and "Traceback" not in reply.text
    reply = http.post("/json", content=json.dumps([1, 2]))
    assert reply.status_code == 500


def test_list_methods(http):
    reply = jrpc(http, "system.listMethods", [])
    assert "VM.get_record" in reply["result"] and "session.login_with_password" in reply["result"]
    xml = http.post("/", content=b"<?xml version='1.0'?><methodCall><methodName>system.listMethods"
                                 b"</methodName><params></params></methodCall>")
    assert xml.headers["content-type"] == "text/xml"
    assert b"<value>pool.get_record</value>" in xml.content and b"Status" not in xml.content


def xml_call(http, method, *params, path="/"):
    body = "".join(f"<param><value>{p}</value></param>" for p in params)
    payload = (f"<?xml version='1.0'?><methodCall><methodName>{method}</methodName>"
               f"<params>{body}</params></methodCall>").encode()
    return http.post(path, content=payload)


def test_xmlrpc_compact_success_and_failure(http):
    reply = xml_call(http, "session.login_with_password", "root", ROOT_PASSWORD, path="/RPC2")
    assert reply.status_code == 200 and reply.headers["content-type"] == "text/xml"
    text = reply.text
    assert text.startswith('<?xml version="1.0"?><methodResponse><params><param><value><struct>'
                           '<member><name>Status</name><value>Success</value></member>')
    assert "\n" not in text and "<string>" not in text
    session = text.split("<name>Value</name><value>")[1].split("<")[0]
    reply = xml_call(http, "VM.get_record", session, "OpaqueRef:q", path="/any/path")
    assert ("<member><name>ErrorDescription</name><value><array><data><value>HANDLE_INVALID"
            "</value><value>VM</value><value>OpaqueRef:q</value></data></array></value>") in reply.text


def test_billion_laughs_rejected(http, xapi):
    bomb = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<methodCall><methodName>&lol3;</methodName></methodCall>"""
    reply = http.post("/", content=bomb)
    assert reply.status_code == 500 and b"lollol" not in reply.content
    assert "Traceback" not in reply.text
    assert xapi.pool.get_all()  # still up


def test_oversize_body_rejected(http, xapi):
    reply = http.post("/", content=b"x" * (17 * 1024 * 1024))
    assert reply.status_code == 413
    assert xapi.pool.get_all()


def test_invalid_utf8_is_invalid_value(http):
    session = login(http)
    pool = jrpc(http, "pool.get_all", [session])["result"][0]
    body = (b'<?xml version="1.0"?><methodCall><methodName>pool.set_name_label</methodName>'
            b"<params><param><value>" + session.encode() + b"</value></param><param><value>"
            + pool.encode() + b"</value></param><param><value>bad\xff\xfeutf8</value></param>"
            b"</params></methodCall>")
    reply = http.post("/", content=body)
    assert reply.status_code == 200
    assert "<value>INVALID_VALUE</value><value>Invalid UTF-8 string in parameter</value>" in reply.text
    raw = (b'{"jsonrpc":"2.0","id":1,"method":"pool.set_name_label","params":["'
           + session.encode() + b'","' + pool.encode() + b'","x\xc3\x28"]}')
    reply = http.post("/jsonrpc", content=raw).json()
    assert reply["error"]["message"] == "INVALID_VALUE"
    assert jrpc(http, "pool.get_name_label", [session, pool])["result"] != "x"


def test_deep_nesting_rejected(http, xapi):
    deep = b"<value><array><data>" * 200 + b"<value>x</value>" + b"</data></array></value>" * 200
    body = (b"<?xml version='1.0'?><methodCall><methodName>pool.get_all</methodName><params>"
            b"<param>" + deep + b"</param></params></methodCall>")
    reply = http.post("/", content=body)
    assert reply.status_code == 500
    reply = http.post("/jsonrpc", content=b'{"jsonrpc":"2.0","id":1,"method":"x","params":'
                      + b"[" * 100000 + b"]" * 100000 + b"}")
    assert reply.status_code == 500
    assert xapi.pool.get_all()
