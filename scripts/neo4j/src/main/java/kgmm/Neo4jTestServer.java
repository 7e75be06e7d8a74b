package kgmm;

import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.neo4j.configuration.GraphDatabaseInternalSettings;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.connectors.HttpsConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.graphdb.config.Setting;

/**
 * A real (embedded) Neo4j 5 Community server for kgmm's test suite.
 *
 * <p>Starts a {@link DatabaseManagementService} rooted at {@code --home} with only the Bolt
 * connector enabled, bound to 127.0.0.1:{@code --port}, authentication enabled and the
 * {@code neo4j} user's password set to {@code --password} (no change required). When the
 * server accepts connections it prints exactly one line
 * {@code KGMM_NEO4J_READY bolt://127.0.0.1:PORT} to stdout. SIGTERM / SIGINT shut it down
 * cleanly through a JVM shutdown hook, so the same home can be reopened (restart keeps data).
 * With {@code --exit-on-stdin-eof} it also shuts down when its stdin is closed, so a launcher
 * that dies without stopping it does not leave an orphaned JVM.
 *
 * <p>Launched by scripts/neo4j_server.py; not meant as a production server.
 */
public final class Neo4jTestServer {
    static final String READY_PREFIX = "KGMM_NEO4J_READY ";
    static final String HOST = "127.0.0.1";

    private Neo4jTestServer() {}

    public static void main(String[] args) throws Exception {
        Path home = null;
        int port = -1;
        String password = null;
        boolean exitOnStdinEof = false;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (a.equals("--exit-on-stdin-eof")) {
                exitOnStdinEof = true;
                continue;
            }
            if (i + 1 >= args.length) {
                usage("missing value for " + a);
            }
            switch (a) {
                case "--home" -> home = Path.of(args[++i]);
                case "--port" -> port = parsePort(args[++i]);
                case "--password" -> password = args[++i];
                default -> usage("unknown argument " + a);
            }
        }
        if (home == null || port <= 0 || password == null || password.isEmpty()) {
            usage("--home, --port and --password are required");
        }
        home = home.toAbsolutePath();
        Files.createDirectories(home);

        if (exitOnStdinEof) {
            watchStdin();
        }
        PrintStream out = System.out;
        out.println("kgmm.Neo4jTestServer: starting Neo4j (home " + home + ", port " + port + ")");
        out.flush();

        Map<Setting<?>, Object> config = new LinkedHashMap<>();
        config.put(BoltConnector.enabled, true);
        config.put(BoltConnector.listen_address, new SocketAddress(HOST, port));
        config.put(BoltConnector.advertised_address, new SocketAddress(HOST, port));
        config.put(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED);
        config.put(HttpConnector.enabled, false);
        config.put(HttpsConnector.enabled, false);
        config.put(GraphDatabaseSettings.auth_enabled, true);
        // Test passwords may be short; the password policy is not what the tests exercise.
        config.put(GraphDatabaseSettings.auth_minimum_password_length, 1);
        config.put(GraphDatabaseSettings.pagecache_memory, 64L * 1024 * 1024);
        config.put(GraphDatabaseSettings.preallocate_logical_logs, false);
        config.put(GraphDatabaseSettings.udc_enabled, false);
        // Netty's default graceful-shutdown quiet period makes every stop take ~10 s;
        // a test server has no clients worth waiting for once it is told to stop.
        config.put(GraphDatabaseInternalSettings.netty_server_shutdown_quiet_period, 0);
        config.put(GraphDatabaseInternalSettings.netty_server_shutdown_timeout, Duration.ofSeconds(5));

        DatabaseManagementService dbms;
        try {
            dbms = new DatabaseManagementServiceBuilder(home).setConfig(config).build();
        } catch (Throwable t) {
            // e.g. the port is taken; exit explicitly, half-started services leave live threads
            t.printStackTrace();
            System.out.flush();
            System.err.flush();
            Runtime.getRuntime().halt(3);
            return;
        }

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                System.out.println("kgmm.Neo4jTestServer: shutting down");
                System.out.flush();
                dbms.shutdown();
                System.out.println("kgmm.Neo4jTestServer: stopped");
                System.out.flush();
            } catch (Throwable t) {
                t.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "kgmm-neo4j-shutdown"));

        try {
            setPassword(dbms, password);
            // Touch the default database so it is fully online before we say "ready".
            GraphDatabaseService db = dbms.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME);
            db.executeTransactionally("RETURN 1");
        } catch (Throwable t) {
            t.printStackTrace();
            System.exit(2); // runs the shutdown hook, which shuts the service down
        }

        out.println(READY_PREFIX + "bolt://" + HOST + ":" + port);
        out.flush();
        stopped.await();
    }

    /** Sets the neo4j user's password (CHANGE NOT REQUIRED) through the system database. */
    private static void setPassword(DatabaseManagementService dbms, String password) {
        GraphDatabaseService system = dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME);
        try {
            system.executeTransactionally(
                    "ALTER USER neo4j SET PASSWORD $pw CHANGE NOT REQUIRED", Map.of("pw", password));
        } catch (RuntimeException e) {
            // On a reopened home the password may already be this one; Neo4j refuses to
            // "change" a password to itself. Still make sure no change is required.
            if (!messages(e).contains("cannot be the same")) {
                throw e;
            }
            system.executeTransactionally("ALTER USER neo4j SET PASSWORD CHANGE NOT REQUIRED");
        }
    }

    /**
     * Exits (running the shutdown hook) once stdin reaches EOF, i.e. when the launching process
     * has gone away without stopping us, so a killed test run leaves no orphaned JVM behind.
     */
    private static void watchStdin() {
        Thread t = new Thread(() -> {
            try {
                byte[] buf = new byte[256];
                while (System.in.read(buf) >= 0) {
                    // ignore input; we only care about EOF
                }
            } catch (Exception ignored) {
                // treat a broken stdin like EOF
            }
            System.out.println("kgmm.Neo4jTestServer: stdin closed, exiting");
            System.out.flush();
            System.exit(0);
        }, "kgmm-neo4j-stdin-watch");
        t.setDaemon(true);
        t.start();
    }

    private static int parsePort(String s) {
        try {
            int p = Integer.parseInt(s);
            if (p > 0 && p <= 65535) {
                return p;
            }
        } catch (NumberFormatException ignored) {
            // fall through
        }
        usage("bad port " + s);
        return -1;
    }

    private static String messages(Throwable t) {
        StringBuilder sb = new StringBuilder();
        for (Throwable c = t; c != null; c = c.getCause()) {
            sb.append(c.getMessage()).append('\n');
        }
        return sb.toString().toLowerCase();
    }

    private static void usage(String why) {
        System.err.println("kgmm.Neo4jTestServer: " + why);
        System.err.println(
                "usage: kgmm.Neo4jTestServer --home DIR --port N --password PW [--exit-on-stdin-eof]");
        System.exit(64);
    }
}
