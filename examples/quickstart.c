/* examples/quickstart.c -- the README's example: ops, a scope, backward. */
#include <stdio.h>
#include <libtensor.h>

int main(void)
{
    tg_scope *scope = tg_scope_push();   /* owns every tensor made below */
    tg_tensor *w = tg_from_f32(TG_SHAPE(2, 2), (float[]){1, -2, 3, -4});
    tg_set_requires_grad(w, true);
    tg_tensor *x = tg_ones(TG_F32, TG_SHAPE(3, 2));

    /* loss = sum(relu(x @ w)); a NULL anywhere flows through, so check once */
    tg_tensor *loss = tg_sum(tg_relu(tg_matmul(x, w)), NULL, 0, false);
    tg_status st = loss ? tg_backward(loss) : tg_last_status();
    if (st == TG_OK) {
        printf("loss = %g\ngrad w = ", tg_item(loss));  /* 12 */
        tg_tensor_print(tg_grad(w), stdout);            /* [[3, 0], [3, 0]] */
        putchar('\n');
    } else {
        fprintf(stderr, "error: %s\n", tg_last_error());
    }
    tg_scope_pop(scope);                 /* frees the tensors and the graph */
    return st == TG_OK ? 0 : 1;
}
