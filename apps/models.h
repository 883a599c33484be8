#ifndef TG_APPS_MODELS_H
#define TG_APPS_MODELS_H
#endif
