// Fences a transactional id (KIP-618's Admin#fenceProducers, what a Connect worker does to a
// zombie task): its current producer's next transactional call fails. The e2e suite runs it
// with `java -cp <kafka libs> Fence.java BOOTSTRAP TRANSACTIONAL_ID` to make Connect's task
// fail in a way a restart fixes (test_hostile.py).
import java.util.List;
import java.util.Map;
import org.apache.kafka.clients.admin.Admin;

public class Fence {
    public static void main(String[] args) throws Exception {
        try (Admin admin = Admin.create(Map.of("bootstrap.servers", args[0]))) {
            admin.fenceProducers(List.of(args[1])).all().get();
        }
        System.out.println("fenced " + args[1]);
    }
}
