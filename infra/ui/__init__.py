"""The gallery (``clip-lambda ui``): a single page served from 127.0.0.1 that searches the stack's images by
text, by image and by example, uploads to its bucket, and shows what the S3 function made of each upload.

    cli.py      clip-lambda ui: the target (local stack, --stack, --api), the port, the upload path
    gallery.py  the HTTP server: the page (static/), the signed API proxy under /api/, the page's /ui/ calls
    proxy.py    SigV4 (execute-api) signing and forwarding of one request, as API Gateway's IAM auth verifies
    target.py   what the gallery talks to: the API URL, bucket, table, region and credentials; stack outputs
    objects.py  presigned GET and PUT URLs, upload keys, the state of an object's DynamoDB item

The browser never holds AWS credentials: the server signs every API request and presigns every S3 URL.
"""
