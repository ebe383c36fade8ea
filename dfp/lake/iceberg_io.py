"""pyiceberg's FileIO for branch tables (see `dfp.lake.iceberg`), loaded by name from the
catalog property `py-io-impl`."""

from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.typedef import EMPTY_DICT, Properties

from dfp.lake.iceberg import IO_REF_PROPERTY, REPOSITORY_PROPERTY


class BranchFileIO(PyArrowFileIO):
    """PyArrow FileIO that reads and writes every `s3://<repo>/<ref>/…` path on one ref."""

    @staticmethod
    def parse_location(location: str, properties: Properties = EMPTY_DICT) -> tuple[str, str, str]:
        scheme, netloc, path = PyArrowFileIO.parse_location(location, properties)
        io_ref = properties.get(IO_REF_PROPERTY)
        if io_ref and scheme in ("s3", "s3a") and netloc == properties.get(REPOSITORY_PROPERTY):
            bucket, _, rest = path.partition("/")
            _ref, _, key = rest.partition("/")
            if key:
                path = f"{bucket}/{io_ref}/{key}"
        return scheme, netloc, path
