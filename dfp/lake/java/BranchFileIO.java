package dfp.iceberg;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.iceberg.hadoop.HadoopFileIO;
import org.apache.iceberg.io.BulkDeletionFailureException;
import org.apache.iceberg.io.FileInfo;
import org.apache.iceberg.io.InputFile;
import org.apache.iceberg.io.OutputFile;
import org.apache.iceberg.io.PositionOutputStream;
import org.apache.iceberg.io.SeekableInputStream;

/**
 * Spark's twin of dfp.iceberg.BranchFileIO (pyiceberg): every {@code s3://<repo>/<ref>/<key>}
 * is read and written physically on one lakeFS ref (property {@code dfp.lakefs.io-ref}), while
 * {@code location()} keeps the logical path, so manifests and metadata record the branch a
 * version was written for, never the run branch that physically holds it.
 *
 * <p>Compiled by {@code dfp stack jars} (javac against Iceberg's Spark runtime), never
 * committed as a binary.
 */
public class BranchFileIO extends HadoopFileIO {
  public static final String REPOSITORY = "dfp.lakefs.repository";
  public static final String IO_REF = "dfp.lakefs.io-ref";

  private String repository;
  private String ioRef;

  @Override
  public void initialize(Map<String, String> properties) {
    super.initialize(properties);
    this.repository = properties.get(REPOSITORY);
    this.ioRef = properties.get(IO_REF);
  }

  /** {@code s3://repo/<any ref>/key} → {@code s3://repo/<io ref>/key}; other paths unchanged. */
  String physical(String location) {
    if (repository == null || ioRef == null) {
      return location;
    }
    for (String scheme : new String[] {"s3://", "s3a://"}) {
      String prefix = scheme + repository + "/";
      if (location.startsWith(prefix)) {
        String rest = location.substring(prefix.length());
        int slash = rest.indexOf('/');
        if (slash > 0 && slash < rest.length() - 1) {
          return prefix + ioRef + rest.substring(slash);
        }
      }
    }
    return location;
  }

  @Override
  public InputFile newInputFile(String location) {
    return new LogicalInputFile(location, super.newInputFile(physical(location)));
  }

  @Override
  public InputFile newInputFile(String location, long length) {
    return new LogicalInputFile(location, super.newInputFile(physical(location), length));
  }

  @Override
  public OutputFile newOutputFile(String location) {
    return new LogicalOutputFile(location, super.newOutputFile(physical(location)));
  }

  @Override
  public void deleteFile(String location) {
    super.deleteFile(physical(location));
  }

  @Override
  public void deleteFiles(Iterable<String> locations) throws BulkDeletionFailureException {
    List<String> physical = new ArrayList<>();
    locations.forEach(location -> physical.add(physical(location)));
    super.deleteFiles(physical);
  }

  @Override
  public Iterable<FileInfo> listPrefix(String prefix) {
    String physicalPrefix = physical(prefix);
    List<FileInfo> logical = new ArrayList<>();
    for (FileInfo info : super.listPrefix(physicalPrefix)) {
      String location = info.location();
      if (location.startsWith(physicalPrefix)) {
        location = prefix + location.substring(physicalPrefix.length());
      }
      logical.add(new FileInfo(location, info.size(), info.createdAtMillis()));
    }
    return logical;
  }

  @Override
  public void deletePrefix(String prefix) {
    super.deletePrefix(physical(prefix));
  }

  /** Reads the physical file; reports the logical location. */
  static final class LogicalInputFile implements InputFile {
    private final String location;
    private final InputFile delegate;

    LogicalInputFile(String location, InputFile delegate) {
      this.location = location;
      this.delegate = delegate;
    }

    @Override
    public long getLength() {
      return delegate.getLength();
    }

    @Override
    public SeekableInputStream newStream() {
      return new PinnedInputStream(delegate.newStream());
    }

    @Override
    public String location() {
      return location;
    }

    @Override
    public boolean exists() {
      return delegate.exists();
    }

    @Override
    public String toString() {
      return location;
    }
  }

  /** Writes the physical file; reports (and records) the logical location. */
  static final class LogicalOutputFile implements OutputFile {
    private final String location;
    private final OutputFile delegate;

    LogicalOutputFile(String location, OutputFile delegate) {
      this.location = location;
      this.delegate = delegate;
    }

    @Override
    public PositionOutputStream create() {
      return new PinnedOutputStream(delegate.create());
    }

    @Override
    public PositionOutputStream createOrOverwrite() {
      return new PinnedOutputStream(delegate.createOrOverwrite());
    }

    @Override
    public String location() {
      return location;
    }

    @Override
    public InputFile toInputFile() {
      return new LogicalInputFile(location, delegate.toInputFile());
    }

    @Override
    public String toString() {
      return location;
    }
  }

  /*
   * Iceberg's ParquetIO unwraps Hadoop-backed streams it does not know to be files and drops
   * the wrapper, whose cleaner then closes the underlying S3A stream mid-write once the
   * garbage collector runs ("Stream is closed"). These plain wrappers keep the whole chain
   * reachable until the writer or reader closes it.
   */

  static final class PinnedOutputStream extends PositionOutputStream {
    private final PositionOutputStream delegate;

    PinnedOutputStream(PositionOutputStream delegate) {
      this.delegate = delegate;
    }

    @Override
    public long getPos() throws java.io.IOException {
      return delegate.getPos();
    }

    @Override
    public void write(int b) throws java.io.IOException {
      delegate.write(b);
    }

    @Override
    public void write(byte[] b, int off, int len) throws java.io.IOException {
      delegate.write(b, off, len);
    }

    @Override
    public void flush() throws java.io.IOException {
      delegate.flush();
    }

    @Override
    public void close() throws java.io.IOException {
      delegate.close();
    }
  }

  static final class PinnedInputStream extends SeekableInputStream {
    private final SeekableInputStream delegate;

    PinnedInputStream(SeekableInputStream delegate) {
      this.delegate = delegate;
    }

    @Override
    public long getPos() throws java.io.IOException {
      return delegate.getPos();
    }

    @Override
    public void seek(long newPos) throws java.io.IOException {
      delegate.seek(newPos);
    }

    @Override
    public int read() throws java.io.IOException {
      return delegate.read();
    }

    @Override
    public int read(byte[] b, int off, int len) throws java.io.IOException {
      return delegate.read(b, off, len);
    }

    @Override
    public long skip(long n) throws java.io.IOException {
      return delegate.skip(n);
    }

    @Override
    public int available() throws java.io.IOException {
      return delegate.available();
    }

    @Override
    public void close() throws java.io.IOException {
      delegate.close();
    }
  }
}
