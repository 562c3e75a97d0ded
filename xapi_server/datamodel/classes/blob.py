"""Class: blob, a named file attached to a pool, host, VM, SR or network (its `blobs`
map, made by X.create_new_blob); its bytes travel over HTTP (/blob, http/blob.py) and
live under <data_dir>/blobs."""
from .._dsl import RC, RO, RW, cls, field, identity, msg, names

BLOB = cls(
    'blob', 'A file a client attached to an object (its bytes: PUT/GET /blob).',
    write_role='pool-operator',
    fields=[
        identity(),
        *names(),
        field('size', 'int', RO, default=0, doc='Bytes stored.'),
        field('public', 'bool', RW, default=False,
              doc='True when anyone may read the bytes, without a session.'),
        field('last_updated', 'datetime', RC, default='19700101T00:00:00Z',
              doc='When the bytes last changed.'),
        field('mime_type', 'string', RC, default='',
              doc='The media type the bytes are served with.'),
    ],
    messages=[
        msg('create', 'string mime_type, bool public=false', 'blob ref',
            'Make an empty blob that no object lists (X.create_new_blob attaches one).',
            role='pool-operator'),
        msg('destroy', 'blob ref self', doc='Forget a blob and its bytes.',
            role='pool-operator'),
    ],
)
